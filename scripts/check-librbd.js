'use strict';
// Prints "true" when librbd's and librados' headers are installed (librbd-dev, librados-dev), so that
// binding.gyp compiles the RBD backstore (native/rbd.cc, NODETGT_HAVE_RBD); "false" builds without it, and a
// config that asks for an RBD LUN is then refused naming the package (src/backstore/rbd.ts).
const fs = require('fs');
const roots = ['/usr/include', '/usr/local/include'];
const has = (h) => roots.some((r) => fs.existsSync(`${r}/${h}`));
const present = process.env.NODETGT_NO_RBD !== '1' && has('rbd/librbd.h') && has('rados/librados.h');
process.stdout.write(present ? 'true' : 'false');
