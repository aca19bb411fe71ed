/* Fuzz the audit line parser and the chain verifier that `shed audit
 * verify` runs on files an attacker may have edited. The input is split into
 * "files" at NUL bytes and into lines at newlines, as verify_file does. */
#include "obs/obs.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    audit_record r;
    shed_err err;
    audit_parse_line(s, size, &r, &err);

    audit_verifier v;
    audit_verifier_init(&v);
    size_t start = 0;
    int file = 0;
    char name[32];
    snprintf(name, sizeof(name), "audit.log.%06d", ++file);
    audit_verifier_file(&v, name);
    for (size_t i = 0; i <= size; i++) {
        bool end = i == size;
        if (!end && s[i] != '\n' && s[i] != '\0') continue;
        if (i > start || (!end && s[i] == '\n'))
            audit_verifier_line(&v, s + start, i - start, !end && s[i] == '\n');
        if (!end && s[i] == '\0') {
            snprintf(name, sizeof(name), "audit.log.%06d", ++file);
            audit_verifier_file(&v, name);
        }
        start = i + 1;
    }
    return 0;
}
