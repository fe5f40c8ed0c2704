#include "tern_gzip.h"

size_t tern_gzip_bound(size_t count) {
    // deflate's own bound plus the gzip header and trailer.
    return (size_t)compressBound((uLong)count) + 32;
}

size_t tern_gzip_member(const uint8_t *bytes, size_t count, uint8_t *out, size_t capacity, int level) {
    z_stream stream = {0};
    // 15 window bits + 16: a gzip wrapper rather than zlib's.
    if (deflateInit2(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    stream.next_in = (Bytef *)bytes;
    stream.avail_in = (uInt)count;
    stream.next_out = out;
    stream.avail_out = (uInt)capacity;
    int status = deflate(&stream, Z_FINISH);
    size_t written = capacity - stream.avail_out;
    deflateEnd(&stream);
    return status == Z_STREAM_END ? written : 0;
}

size_t tern_gzip_first_member_length(const uint8_t *bytes, size_t count) {
    z_stream stream = {0};
    if (inflateInit2(&stream, 15 + 16) != Z_OK) return 0;
    uint8_t scratch[16384];
    stream.next_in = (Bytef *)bytes;
    stream.avail_in = (uInt)count;
    int status;
    do {
        stream.next_out = scratch;
        stream.avail_out = sizeof scratch;
        status = inflate(&stream, Z_NO_FLUSH);
    } while (status == Z_OK);
    size_t length = status == Z_STREAM_END ? (size_t)stream.total_in : 0;
    inflateEnd(&stream);
    return length;
}
