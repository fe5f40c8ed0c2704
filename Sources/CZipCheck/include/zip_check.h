#ifndef TERN_ZIP_CHECK_H
#define TERN_ZIP_CHECK_H

#include <stdint.h>

/// Checks a raw deflate stream (a zip entry's data) in a file before anything else inflates it: reads at
/// most `compressed` bytes from `offset` of `fd` and inflates them into a scratch buffer.
/// Returns 0 when the stream ends within those bytes and inflates to at most `limit` bytes; 1 when the
/// bytes run out before the stream ends; 2 when the stream is corrupt; 3 when it inflates past `limit`;
/// -1 when the file cannot be read.
int tern_deflate_stream_check(int fd, int64_t offset, uint64_t compressed, uint64_t limit);

#endif
