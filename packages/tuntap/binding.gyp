{
  "targets": [
    {
      "target_name": "tuntap",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["src/native/tun.cc", "src/native/fast_socket.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions"],
          "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wextra"]
        }]
      ]
    }
  ]
}
