// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) in five flavours, chosen at run time.
//
// Every function here works on the raw CRC register: callers pass ~crc in and complement the result,
// so that crc32c(b, crc32c(a)) == crc32c(a || b) holds at the JavaScript level.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nodetgt {
namespace crc32c {

enum class Impl { Portable = 0, Sse42 = 1, Sse42Clmul = 2, Vpclmul = 3, Vpclmul512 = 4 };
constexpr int kImplCount = 5;

using Fn = uint32_t (*)(uint32_t reg, const uint8_t* p, size_t n);

// Tables and folding constants; idempotent and thread-safe (called from module init).
void Init();

// The best implementation this CPU can run, detected once.
Impl Best();
const char* ImplName(Impl impl);
bool Supported(Impl impl);
Fn Get(Impl impl);

// Slicing-by-8, any architecture.
uint32_t Portable(uint32_t reg, const uint8_t* p, size_t n);

}  // namespace crc32c
}  // namespace nodetgt
