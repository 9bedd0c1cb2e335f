{
  "targets": [
    {
      "target_name": "nodetgt_native",
      "variables": {
        "liburing_present": "<!(node scripts/check-liburing.js)",
        "librbd_present": "<!(node scripts/check-librbd.js)"
      },
      "sources": ["native/addon.cc", "native/copy.cc", "native/crc32c.cc", "native/idlepoll.cc", "native/inline-io.cc", "native/memmap.cc", "native/ring.cc", "native/sockwrite.cc", "native/tcpinfo.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-exceptions", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-luring"],
      "conditions": [
        ["librbd_present=='true'", {
          "sources": ["native/rbd.cc"],
          "defines": ["NODETGT_HAVE_RBD"],
          "libraries": ["-lrbd", "-lrados"]
        }]
      ]
    }
  ]
}
