#include "zip_check.h"

#include <unistd.h>
#include <zlib.h>

int tern_deflate_stream_check(int fd, int64_t offset, uint64_t compressed, uint64_t limit) {
    unsigned char input[65536];
    unsigned char output[65536];
    z_stream stream = {0};
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) return -1;
    uint64_t consumed = 0, produced = 0;
    int status = 1;
    int result = Z_OK;
    while (result != Z_STREAM_END) {
        if (stream.avail_in == 0) {
            if (consumed >= compressed) { status = 1; goto done; }
            uint64_t want = compressed - consumed;
            if (want > sizeof input) want = sizeof input;
            ssize_t got = pread(fd, input, (size_t)want, (off_t)(offset + (int64_t)consumed));
            if (got < 0) { status = -1; goto done; }
            if (got == 0) { status = 1; goto done; }
            consumed += (uint64_t)got;
            stream.next_in = input;
            stream.avail_in = (uInt)got;
        }
        stream.next_out = output;
        stream.avail_out = sizeof output;
        result = inflate(&stream, Z_NO_FLUSH);
        if (result == Z_NEED_DICT || result == Z_DATA_ERROR || result == Z_MEM_ERROR || result == Z_STREAM_ERROR) {
            status = 2;
            goto done;
        }
        produced += sizeof output - stream.avail_out;
        if (produced > limit) { status = 3; goto done; }
        if (result == Z_BUF_ERROR && stream.avail_in != 0) { status = 2; goto done; }
    }
    status = 0;
done:
    inflateEnd(&stream);
    return status;
}
