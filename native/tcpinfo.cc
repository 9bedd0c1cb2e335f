// tcpInfo(fd): a few fields of getsockopt(fd, IPPROTO_TCP, TCP_INFO). `nodetgt tune` and `nodetgt show
// sessions` use them to tell whether jumbo frames reach the initiator: an interface at MTU 9000 whose
// connection still sends 1448-byte segments has a smaller MTU somewhere on the path.
//
// Cold path (an operator's command, a metrics refresh): a plain object per call is fine here.
#include "tcpinfo.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "napi_util.h"

namespace nodetgt {
namespace {

void SetUint(napi_env env, napi_value obj, const char* name, uint32_t v) {
  napi_value n;
  napi_create_uint32(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

napi_value TcpInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tcpInfo: expected a file descriptor");
    return nullptr;
  }
  struct tcp_info ti;
  std::memset(&ti, 0, sizeof(ti));
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(TCP_INFO)");
    return nullptr;
  }
  // An older kernel fills a shorter struct; the fields read here have all been there since Linux 2.6.
  napi_value out;
  napi_create_object(env, &out);
  SetUint(env, out, "state", ti.tcpi_state);
  SetUint(env, out, "options", ti.tcpi_options);
  SetUint(env, out, "pmtu", ti.tcpi_pmtu);
  SetUint(env, out, "sndMss", ti.tcpi_snd_mss);
  SetUint(env, out, "rcvMss", ti.tcpi_rcv_mss);
  SetUint(env, out, "advMss", ti.tcpi_advmss);
  SetUint(env, out, "rttUs", ti.tcpi_rtt);
  SetUint(env, out, "rttVarUs", ti.tcpi_rttvar);
  SetUint(env, out, "totalRetrans", ti.tcpi_total_retrans);
  SetUint(env, out, "sndCwnd", ti.tcpi_snd_cwnd);
  return out;
}

}  // namespace

void RegisterTcpInfo(napi_env env, napi_value exports) { SetFunction(env, exports, "tcpInfo", TcpInfo); }

}  // namespace nodetgt
