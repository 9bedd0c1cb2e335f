// CRC32C: portable slicing-by-8, and on x86-64 the SSE4.2 crc32 instruction run over three independent
// streams (the instruction has a latency of 3 cycles and a throughput of 1, so three chains keep it busy).
// The three partial CRCs are merged by multiplying by x^(8*len) mod P: with PCLMULQDQ when present,
// otherwise with per-byte lookup tables for two fixed stream lengths.
//
// Representation: a 32-bit value is a polynomial of degree < 32 in reflected order (bit 31 is x^0,
// bit 0 is x^31), which is how the crc32 instruction and the usual tables see the register.
#include "crc32c.h"

#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#define NODETGT_X86_64 1
#include <nmmintrin.h>
#include <wmmintrin.h>
#define TGT_SSE42 __attribute__((target("sse4.2")))
#define TGT_CLMUL __attribute__((target("sse4.2,pclmul")))
#endif

namespace nodetgt {
namespace crc32c {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // Castagnoli, reflected
constexpr uint32_t kOne = 0x80000000u;   // the polynomial 1
constexpr uint32_t kX = 0x40000000u;     // the polynomial x

uint32_t g_table[8][256];  // g_table[k][b]: register after byte b followed by k zero bytes
uint32_t g_x2n[64];        // x^(2^k) mod P
std::once_flag g_once;
Impl g_best = Impl::Portable;

// a*b mod P.
uint32_t MulMod(uint32_t a, uint32_t b) {
  uint32_t prod = 0;
  for (int i = 0; i < 32; i++) {
    if (a & (kOne >> i)) prod ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return prod;
}

// x^n mod P, by squaring.
uint32_t XPow(uint64_t n) {
  uint32_t p = kOne;
  for (int k = 0; n != 0; k++, n >>= 1)
    if (n & 1) p = MulMod(g_x2n[k & 63], p);
  return p;
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

#ifdef NODETGT_X86_64
// Stream lengths for the 3-way loop. With PCLMUL any multiple of 8 up to kMaxLane is used, so one
// pass of three streams covers the whole buffer (bar < 24 bytes); the constants are tabulated per lane count.
constexpr size_t kMaxWords = 1024;  // 8 KiB per stream
constexpr size_t kThreeWayMin = 144;
uint32_t g_k1[kMaxWords + 1];  // x^(64w - 33): shifts a register by w words, folded through clmul+crc32
uint32_t g_k2[kMaxWords + 1];  // the same for 2w words

// Without PCLMUL: two fixed stream lengths and a 4x256 table each to shift a register over one stream.
constexpr size_t kLong = 8192, kShort = 256;
uint32_t g_shiftLong[4][256], g_shiftShort[4][256];

void FillShiftTable(uint32_t table[4][256], size_t bytes) {
  const uint32_t k = XPow(8 * static_cast<uint64_t>(bytes));
  for (int i = 0; i < 4; i++)
    for (uint32_t b = 0; b < 256; b++) table[i][b] = MulMod(b << (8 * i), k);
}

inline uint32_t ShiftByTable(const uint32_t table[4][256], uint32_t v) {
  return table[0][v & 0xff] ^ table[1][(v >> 8) & 0xff] ^ table[2][(v >> 16) & 0xff] ^ table[3][v >> 24];
}

TGT_SSE42 inline uint32_t HwSerial(uint32_t reg, const uint8_t* p, size_t n) {
  uint64_t r = reg;
  for (; n >= 8; p += 8, n -= 8) r = _mm_crc32_u64(r, Load64(p));
  uint32_t c = static_cast<uint32_t>(r);
  if (n & 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c = _mm_crc32_u32(c, v);
    p += 4;
  }
  if (n & 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    c = _mm_crc32_u16(c, v);
    p += 2;
  }
  if (n & 1) c = _mm_crc32_u8(c, *p);
  return c;
}

// Runs three streams of `words` 8-byte words each, starting at p, p+len, p+2*len.
TGT_SSE42 inline void ThreeStreams(uint64_t& a, uint64_t& b, uint64_t& c, const uint8_t* p, size_t words) {
  const size_t len = words * 8;
  const uint8_t* end = p + len;
  do {
    a = _mm_crc32_u64(a, Load64(p));
    b = _mm_crc32_u64(b, Load64(p + len));
    c = _mm_crc32_u64(c, Load64(p + 2 * len));
    p += 8;
  } while (p < end);
}

TGT_SSE42 inline const uint8_t* AlignTo8(uint32_t& reg, const uint8_t* p, size_t& n) {
  size_t head = (0 - reinterpret_cast<uintptr_t>(p)) & 7;
  if (head > n) head = n;
  reg = HwSerial(reg, p, head);
  n -= head;
  return p + head;
}

TGT_SSE42 uint32_t Sse42(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < 3 * kShort) return HwSerial(reg, p, n);
  p = AlignTo8(reg, p, n);
  while (n >= 3 * kLong) {
    uint64_t a = reg, b = 0, c = 0;
    ThreeStreams(a, b, c, p, kLong / 8);
    reg = ShiftByTable(g_shiftLong, ShiftByTable(g_shiftLong, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
          static_cast<uint32_t>(c);
    p += 3 * kLong;
    n -= 3 * kLong;
  }
  while (n >= 3 * kShort) {
    uint64_t a = reg, b = 0, c = 0;
    ThreeStreams(a, b, c, p, kShort / 8);
    reg = ShiftByTable(g_shiftShort, ShiftByTable(g_shiftShort, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
          static_cast<uint32_t>(c);
    p += 3 * kShort;
    n -= 3 * kShort;
  }
  return HwSerial(reg, p, n);
}

// a*x^(8*2w) ^ b*x^(8*w) mod P: two carry-less products (each a*k*x in the 64-bit reflected view),
// xored, then one crc32 of the 64-bit sum multiplies by x^32 and reduces, which the -33 in k undoes.
TGT_CLMUL inline uint32_t FoldTwo(uint32_t a, uint32_t b, size_t words) {
  const __m128i pa = _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(a)),
                                          _mm_cvtsi32_si128(static_cast<int>(g_k2[words])), 0x00);
  const __m128i pb = _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(b)),
                                          _mm_cvtsi32_si128(static_cast<int>(g_k1[words])), 0x00);
  const uint64_t folded = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_xor_si128(pa, pb)));
  return static_cast<uint32_t>(_mm_crc32_u64(0, folded));
}

TGT_CLMUL uint32_t Sse42Clmul(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < kThreeWayMin) return HwSerial(reg, p, n);
  p = AlignTo8(reg, p, n);
  while (n >= 24) {
    size_t words = n / 24;
    if (words > kMaxWords) words = kMaxWords;
    uint64_t a = reg, b = 0, c = 0;
    ThreeStreams(a, b, c, p, words);
    reg = FoldTwo(static_cast<uint32_t>(a), static_cast<uint32_t>(b), words) ^ static_cast<uint32_t>(c);
    p += 24 * words;
    n -= 24 * words;
    if (n < kThreeWayMin) break;
  }
  return HwSerial(reg, p, n);
}
#endif  // NODETGT_X86_64

void InitOnce() {
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int i = 0; i < 8; i++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    g_table[0][b] = c;
  }
  for (int k = 1; k < 8; k++)
    for (int b = 0; b < 256; b++) g_table[k][b] = (g_table[k - 1][b] >> 8) ^ g_table[0][g_table[k - 1][b] & 0xff];
  g_x2n[0] = kX;
  for (int k = 1; k < 64; k++) g_x2n[k] = MulMod(g_x2n[k - 1], g_x2n[k - 1]);

#ifdef NODETGT_X86_64
  __builtin_cpu_init();
  const bool sse42 = __builtin_cpu_supports("sse4.2");
  const bool clmul = sse42 && __builtin_cpu_supports("pclmul");
  if (sse42) {
    FillShiftTable(g_shiftLong, kLong);
    FillShiftTable(g_shiftShort, kShort);
    g_best = Impl::Sse42;
  }
  if (clmul) {
    for (size_t w = 1; w <= kMaxWords; w++) {
      g_k1[w] = XPow(64 * w - 33);
      g_k2[w] = XPow(128 * w - 33);
    }
    g_best = Impl::Sse42Clmul;
  }
#endif
}

}  // namespace

uint32_t Portable(uint32_t c, const uint8_t* p, size_t n) {
  for (; n != 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; n--) c = (c >> 8) ^ g_table[0][(c ^ *p++) & 0xff];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; n >= 8; p += 8, n -= 8) {
    const uint64_t v = Load64(p) ^ c;
    c = g_table[7][v & 0xff] ^ g_table[6][(v >> 8) & 0xff] ^ g_table[5][(v >> 16) & 0xff] ^
        g_table[4][(v >> 24) & 0xff] ^ g_table[3][(v >> 32) & 0xff] ^ g_table[2][(v >> 40) & 0xff] ^
        g_table[1][(v >> 48) & 0xff] ^ g_table[0][v >> 56];
  }
#endif
  for (; n != 0; n--) c = (c >> 8) ^ g_table[0][(c ^ *p++) & 0xff];
  return c;
}

void Init() { std::call_once(g_once, InitOnce); }

Impl Best() { return g_best; }

bool Supported(Impl impl) {
  return impl == Impl::Portable || (impl == Impl::Sse42 && g_best != Impl::Portable) || impl == g_best;
}

const char* ImplName(Impl impl) {
  switch (impl) {
    case Impl::Sse42Clmul:
      return "sse4.2+pclmul";
    case Impl::Sse42:
      return "sse4.2";
    default:
      return "portable";
  }
}

Fn Get(Impl impl) {
#ifdef NODETGT_X86_64
  if (Supported(impl)) {
    if (impl == Impl::Sse42Clmul) return Sse42Clmul;
    if (impl == Impl::Sse42) return Sse42;
  }
#endif
  return Portable;
}

}  // namespace crc32c
}  // namespace nodetgt
