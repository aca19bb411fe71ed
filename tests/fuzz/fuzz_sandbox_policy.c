/* Fuzz the sandbox policy parser: any JSON document either validates into a
 * policy (with a compiled seccomp filter and a digest) or is refused with a
 * message; never a crash. */
#include "base/json.h"
#include "sandbox/sandbox.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *doc = json_parse((const char *)data, size, 1 << 20, 32, &err);
    if (!doc) return 0;
    sandbox_policy *p = NULL;
    if (sandbox_policy_parse(doc, &p, &err) == 0) {
        if (strlen(sandbox_policy_digest(p)) != 64) abort();
        sandbox_policy_free(p);
    } else if (!err.msg[0]) {
        abort(); /* a refusal always says why */
    }
    json_decref(doc);
    return 0;
}
