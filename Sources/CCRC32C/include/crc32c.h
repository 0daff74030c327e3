#ifndef MERIDIAN_CRC32C_H
#define MERIDIAN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli) continuing from `crc` (0 for a fresh checksum) over `len` bytes.
/// Uses the CPU's CRC instruction (SSE4.2 on x86-64, the CRC extension on arm64) when present.
uint32_t meridian_crc32c(uint32_t crc, const void *data, size_t len);

/// The portable table-driven implementation (slicing-by-8).
uint32_t meridian_crc32c_software(uint32_t crc, const void *data, size_t len);

/// The instruction-based implementation; only call it when meridian_crc32c_hardware_available() is 1.
uint32_t meridian_crc32c_hardware(uint32_t crc, const void *data, size_t len);

/// 1 when this CPU has a CRC-32C instruction the library can use, else 0.
int meridian_crc32c_hardware_available(void);

#endif
