/* multipart/form-data (RFC 7578) as the SDKs send uploads: a strict parser
 * over a body already bounded in size. Parts point into the body; nothing is
 * copied. Never trusts a part's headers beyond what it checks here. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define MULTIPART_MAX_PARTS 500
#define MULTIPART_NAME_MAX  1024

typedef struct multipart_part {
    char name[128];                    /* form field name */
    char filename[MULTIPART_NAME_MAX]; /* "" when the part is not a file */
    bool has_filename;
    const char *data;
    size_t len;
} multipart_part_t;

/* Parse `body` given the request's Content-Type. Returns the number of parts,
 * or -1 with msg saying what is wrong (more than `max` parts is an error). */
int multipart_parse(const char *content_type, const char *body, size_t len, multipart_part_t *parts,
                    int max, char *msg, size_t msglen);
