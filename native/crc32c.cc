// CRC32C: portable slicing-by-8, and on x86-64 the SSE4.2 crc32 instruction run over three independent
// streams (the instruction has a latency of 3 cycles and a throughput of 1, so three chains keep it busy).
// The three partial CRCs are merged by multiplying by x^(8*len) mod P: with PCLMULQDQ when present,
// otherwise with per-byte lookup tables for two fixed stream lengths.
// Where the CPU has AVX2 and VPCLMULQDQ, long buffers are folded instead: 128 bytes per step in four 256-bit
// accumulators (256 bytes in four 512-bit ones where it also has AVX-512), each 128-bit lane carried forward by two carry-less products, and the one 128-bit remainder
// reduced by the crc32 instruction (Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
// Intel, 2009, describes the folding; the constants here come from XPow at start-up).
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
#define TGT_VCLMUL __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))
#define TGT_ZCLMUL __attribute__((target("sse4.2,pclmul,avx2,avx512f,avx512vl,vpclmulqdq")))
#include <immintrin.h>
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
unsigned g_supported = 1u << static_cast<int>(Impl::Portable);

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

// ---- Folding with VPCLMULQDQ -------------------------------------------------------------------------------
// A 16-byte lane loaded from memory holds, in the reflected view, the polynomial whose x^127 coefficient is bit 0
// of its first byte: its low qword is the leading (higher-degree) half. Moving a lane forward by D bits, i.e.
// multiplying it by x^D mod P, is lo*x^(D+64) ^ hi*x^D; each carry-less product of a qword by a 32-bit constant k
// (zero-extended) is the product times x^33 in that view, hence constants x^(D+64-33) and x^(D-33). The result has
// at most 128 bits, ready to be xored into the lane D bits further on.
struct FoldK {
  uint32_t lo, hi;
};
FoldK g_fold1024, g_fold256, g_fold128;  // 128 bytes (main loop), 32 bytes (ymm to ymm), 16 bytes (lane to lane)
FoldK g_fold2048, g_fold512;              // 256 bytes (the AVX-512 main loop), 64 bytes (zmm to zmm)

FoldK MakeFold(uint64_t bits) { return {XPow(bits + 64 - 33), XPow(bits - 33)}; }

TGT_VCLMUL inline __m256i Fold256(__m256i x, __m256i k) {
  return _mm256_xor_si256(_mm256_clmulepi64_epi128(x, k, 0x00), _mm256_clmulepi64_epi128(x, k, 0x11));
}

TGT_VCLMUL inline __m128i Fold128(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

TGT_VCLMUL inline __m256i Both(FoldK k) {
  return _mm256_set_epi64x(k.hi, k.lo, k.hi, k.lo);
}

TGT_VCLMUL inline __m256i Load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

constexpr size_t kFoldMin = 256;

// The last 256-bit accumulator, congruent to everything before p and aligned to its end, and the tail p[0..n):
// lane 0 folds onto lane 1, then the tail's 16-byte blocks, and the crc32 instruction reduces the one lane left
// (its CRC from a zero register is the register) and runs the last bytes.
TGT_VCLMUL inline uint32_t FinishYmm(__m256i y, const uint8_t* p, size_t n) {
  const __m128i k128 = _mm256_castsi256_si128(Both(g_fold128));
  __m128i f = _mm_xor_si128(Fold128(_mm256_castsi256_si128(y), k128), _mm256_extracti128_si256(y, 1));
  for (; n >= 16; p += 16, n -= 16)
    f = _mm_xor_si128(Fold128(f, k128), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  uint64_t r = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(f)));
  r = _mm_crc32_u64(r, static_cast<uint64_t>(_mm_extract_epi64(f, 1)));
  return HwSerial(static_cast<uint32_t>(r), p, n);
}

TGT_VCLMUL uint32_t Vpclmul(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < kFoldMin) return Sse42Clmul(reg, p, n);
  // The register enters as the first 32 bits of the message: (M + reg*x^(len-32))*x^32 = reg*x^len + M*x^32.
  __m256i x0 = _mm256_xor_si256(Load256(p), _mm256_zextsi128_si256(_mm_cvtsi32_si128(static_cast<int>(reg))));
  __m256i x1 = Load256(p + 32), x2 = Load256(p + 64), x3 = Load256(p + 96);
  p += 128;
  n -= 128;
  const __m256i k1024 = Both(g_fold1024);
  for (; n >= 128; p += 128, n -= 128) {
    x0 = _mm256_xor_si256(Fold256(x0, k1024), Load256(p));
    x1 = _mm256_xor_si256(Fold256(x1, k1024), Load256(p + 32));
    x2 = _mm256_xor_si256(Fold256(x2, k1024), Load256(p + 64));
    x3 = _mm256_xor_si256(Fold256(x3, k1024), Load256(p + 96));
  }
  const __m256i k256 = Both(g_fold256);
  x1 = _mm256_xor_si256(Fold256(x0, k256), x1);
  x2 = _mm256_xor_si256(Fold256(x1, k256), x2);
  x3 = _mm256_xor_si256(Fold256(x2, k256), x3);
  return FinishYmm(x3, p, n);
}

// The same folding in 512-bit registers: four lanes of 16 bytes per register, 256 bytes per step, three-way xors
// in one vpternlogq. Below kZFoldMin the 256-bit path is as fast, so short PDUs never touch the zmm state.
TGT_ZCLMUL inline __m512i Xor3(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi64(a, b, c, 0x96); }

TGT_ZCLMUL inline __m512i Fold512(__m512i x, __m512i k, __m512i next) {
  return Xor3(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), next);
}

TGT_ZCLMUL inline __m512i All4(FoldK k) { return _mm512_set_epi64(k.hi, k.lo, k.hi, k.lo, k.hi, k.lo, k.hi, k.lo); }

TGT_ZCLMUL inline __m512i Load512(const uint8_t* p) { return _mm512_loadu_si512(p); }

constexpr size_t kZFoldMin = 1024;

TGT_ZCLMUL uint32_t Vpclmul512(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < kZFoldMin) return Vpclmul(reg, p, n);
  __m512i x0 = _mm512_xor_si512(Load512(p), _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(reg))));
  __m512i x1 = Load512(p + 64), x2 = Load512(p + 128), x3 = Load512(p + 192);
  p += 256;
  n -= 256;
  const __m512i k2048 = All4(g_fold2048);
  for (; n >= 256; p += 256, n -= 256) {
    x0 = Fold512(x0, k2048, Load512(p));
    x1 = Fold512(x1, k2048, Load512(p + 64));
    x2 = Fold512(x2, k2048, Load512(p + 128));
    x3 = Fold512(x3, k2048, Load512(p + 192));
  }
  const __m512i k512 = All4(g_fold512);
  x1 = Fold512(x0, k512, x1);
  x2 = Fold512(x1, k512, x2);
  x3 = Fold512(x2, k512, x3);
  for (; n >= 64; p += 64, n -= 64) x3 = Fold512(x3, k512, Load512(p));
  // Lanes 0-1 move 256 bits on to lanes 2-3. (The zero-masked extracts
  // say the same as the plain ones, which GCC 12 warns about for their undefined pass-through operand.)
  const __m256i lo = _mm512_maskz_extracti64x4_epi64(0xff, x3, 0), hi = _mm512_maskz_extracti64x4_epi64(0xff, x3, 1);
  const __m256i y = _mm256_xor_si256(Fold256(lo, Both(g_fold256)), hi);
  return FinishYmm(y, p, n);
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
    g_supported |= 1u << static_cast<int>(Impl::Sse42);
  }
  if (clmul) {
    for (size_t w = 1; w <= kMaxWords; w++) {
      g_k1[w] = XPow(64 * w - 33);
      g_k2[w] = XPow(128 * w - 33);
    }
    g_best = Impl::Sse42Clmul;
    g_supported |= 1u << static_cast<int>(Impl::Sse42Clmul);
  }
  // __builtin_cpu_supports("avx2") also checks that the OS saves the YMM state.
  if (clmul && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq")) {
    g_fold1024 = MakeFold(1024);
    g_fold256 = MakeFold(256);
    g_fold128 = MakeFold(128);
    g_best = Impl::Vpclmul;
    g_supported |= 1u << static_cast<int>(Impl::Vpclmul);
    // "avx512f" is reported only where the OS also saves the zmm state.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
      g_fold2048 = MakeFold(2048);
      g_fold512 = MakeFold(512);
      g_best = Impl::Vpclmul512;
      g_supported |= 1u << static_cast<int>(Impl::Vpclmul512);
    }
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

bool Supported(Impl impl) { return (g_supported >> static_cast<int>(impl)) & 1u; }

const char* ImplName(Impl impl) {
  switch (impl) {
    case Impl::Vpclmul512:
      return "avx512+vpclmulqdq";
    case Impl::Vpclmul:
      return "avx2+vpclmulqdq";
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
    if (impl == Impl::Vpclmul512) return Vpclmul512;
    if (impl == Impl::Vpclmul) return Vpclmul;
    if (impl == Impl::Sse42Clmul) return Sse42Clmul;
    if (impl == Impl::Sse42) return Sse42;
  }
#endif
  return Portable;
}

}  // namespace crc32c
}  // namespace nodetgt
