// Small helpers over the N-API C interface, used on the hot paths where node-addon-api's wrappers
// (handle objects, argument vectors) would cost more than the work itself.
#pragma once

#include <node_api.h>
#include <sys/uio.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace nodetgt {

struct Ring;

// Per-addon-instance (so per-thread) state, held with napi_set_instance_data.
struct Instance {
  Ring* ring = nullptr;
  void* rbd = nullptr;  // the thread's RBD hub (native/rbd.cc), when built with librbd
};

inline Instance* GetInstance(napi_env env) {
  void* data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<Instance*>(data);
}

// Throws `Error(message)` with .code = 'E...' and .errno = -err (err is a positive errno).
inline void ThrowErrno(napi_env env, int err, const char* syscall) {
  const char* name = uv_err_name(-err);
  std::string msg = std::string(syscall) + ": " + name + " (" + uv_strerror(-err) + ")";
  napi_value code, message, error, errnoValue, sys;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg.c_str(), msg.size(), &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
}

inline size_t ElementSize(napi_typedarray_type t) {
  switch (t) {
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 1;
  }
}

// Pointer and byte length of any ArrayBufferView (typed array or DataView), no copy.
inline bool GetBytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  napi_typedarray_type type;
  size_t length = 0;
  void* ptr = nullptr;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, nullptr, nullptr) == napi_ok) {
    *data = static_cast<uint8_t*>(ptr);
    *len = length * ElementSize(type);
    return true;
  }
  if (napi_get_dataview_info(env, v, &length, &ptr, nullptr, nullptr) == napi_ok) {
    *data = static_cast<uint8_t*>(ptr);
    *len = length;
    return true;
  }
  return false;
}

inline napi_value NumberValue(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

// Throws TypeError(msg) with code ERR_INVALID_ARG_TYPE; returns nullptr for the caller to return.
inline napi_value ThrowArgType(napi_env env, const char* msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return nullptr;
}

// One ArrayBufferView or an array of 1..max of them, as iovecs: false (nothing thrown) when it is neither.
inline bool GetIovecs(napi_env env, napi_value bufs, iovec* iov, uint32_t max, uint32_t* n) {
  bool isArray = false;
  napi_is_array(env, bufs, &isArray);
  uint8_t* data;
  if (!isArray) {
    if (!GetBytes(env, bufs, &data, &iov[0].iov_len)) return false;
    iov[0].iov_base = data;
    *n = 1;
    return true;
  }
  napi_get_array_length(env, bufs, n);
  if (*n == 0 || *n > max) return false;
  for (uint32_t i = 0; i < *n; i++) {
    napi_value el;
    if (napi_get_element(env, bufs, i, &el) != napi_ok || !GetBytes(env, el, &data, &iov[i].iov_len)) return false;
    iov[i].iov_base = data;
  }
  return true;
}

inline bool GetInt32(napi_env env, napi_value v, int32_t* out) { return napi_get_value_int32(env, v, out) == napi_ok; }
inline bool GetInt64(napi_env env, napi_value v, int64_t* out) { return napi_get_value_int64(env, v, out) == napi_ok; }

inline napi_value Undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

inline void SetFunction(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

}  // namespace nodetgt
