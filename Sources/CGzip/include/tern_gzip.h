#ifndef TERN_GZIP_H
#define TERN_GZIP_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/// Compresses `count` bytes into one complete gzip member written to `out` (capacity `capacity`; a bound
/// is `tern_gzip_bound(count)`). Returns the member's length, or 0 when it does not fit or zlib fails.
/// Concatenated members are one valid gzip file, so an output can grow (and be cut back) member by member.
size_t tern_gzip_member(const uint8_t *bytes, size_t count, uint8_t *out, size_t capacity, int level);

/// An upper bound of `tern_gzip_member`'s output for `count` input bytes.
size_t tern_gzip_bound(size_t count);

/// The length of the first gzip member of `bytes` (it inflates it to find its end); 0 when `bytes` does
/// not hold a complete member.
size_t tern_gzip_first_member_length(const uint8_t *bytes, size_t count);

#endif
