// tcpInfo(fd): the kernel's view of a TCP connection (TCP_INFO), for the path MTU and MSS checks (tcpinfo.cc).
#pragma once

#include <node_api.h>

namespace nodetgt {
void RegisterTcpInfo(napi_env env, napi_value exports);
}  // namespace nodetgt
