/* grep placeholder until the next step */
#include "tools/internal.h"
json_t *tools_grep(tools_t *t, json_t *input, int64_t deadline_ms, int cancel_fd)
{
    (void)t, (void)input, (void)deadline_ms, (void)cancel_fd;
    return tools_errorf("grep: not available yet");
}
