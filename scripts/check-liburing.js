'use strict';
// Fail the native build early, with the package to install, when liburing's headers are missing.
const fs = require('fs');
const candidates = ['/usr/include/liburing.h', '/usr/local/include/liburing.h'];
if (!candidates.some((p) => fs.existsSync(p))) {
  console.error('\nnodetgt: liburing headers not found (liburing.h).');
  console.error('nodetgt: install them first:  sudo apt-get install liburing-dev   (Debian/Ubuntu)');
  console.error('nodetgt:                      sudo dnf install liburing-devel      (Fedora/RHEL)\n');
  process.exit(1);
}
