/* Fuzz the skill upload path of `shed serve`: arbitrary bytes as a
 * multipart/form-data body (boundary "b"), then the parts that are files
 * through skill_check and, when accepted, skill_pack_zip. Must parse or
 * refuse, never read outside the body, crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/multipart.h"
#include "server/skill_pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static multipart_part_t parts[64];
    static skill_file_t files[64];
    char msg[512];
    int n = multipart_parse("multipart/form-data; boundary=b", (const char *)data, size, parts, 64,
                            msg, sizeof(msg));
    if (n <= 0) return 0;
    int nf = 0;
    for (int i = 0; i < n; i++) {
        if (!parts[i].has_filename) continue;
        files[nf].path = parts[i].filename;
        files[nf].data = parts[i].data;
        files[nf].len = parts[i].len;
        nf++;
    }
    skill_meta_t meta;
    if (skill_check(files, nf, &meta, msg, sizeof(msg)) < 0) return 0;
    buf_t out;
    buf_init(&out, 1 << 20);
    skill_pack_zip(files, nf, &out, msg, sizeof(msg));
    buf_free(&out);
    return 0;
}
