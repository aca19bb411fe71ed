/* Fuzz the memory API response decoder: arbitrary JSON bodies as list pages
 * and memory objects must decode or be refused, never crash or leak. */
#include "base/json.h"
#include "memory/memory.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void req_clear(memory_req_t *r)
{
    free(r->item.id);
    free(r->item.path);
    free(r->item.content);
    for (size_t i = 0; i < r->n_items; i++) {
        free(r->items[i].id);
        free(r->items[i].path);
        free(r->items[i].content);
    }
    free(r->items);
    free(r->next_page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *j = json_parse((const char *)data, size, 1 << 20, 32, &err);
    if (!j) return 0;
    const memory_op_t ops[] = {MEMORY_OP_LIST, MEMORY_OP_GET, MEMORY_OP_UPDATE, MEMORY_OP_DELETE};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        memory_req_t r = {.op = ops[i]};
        memory_req_set_json(&r, size % 2 ? 200 : 409, j);
        req_clear(&r);
    }
    json_decref(j);
    return 0;
}
