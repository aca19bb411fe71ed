/* Helpers shared by the files of src/obs; not part of the module's API. */
#pragma once
#include <stdbool.h>

/* Could log_redact() change s? Every pattern it masks (base/log.h: sk-ant-,
 * sk-shed-, whsec_, Bearer, x-api-key) contains one of the substrings this
 * looks for, so a false answer means s holds no credential log_redact
 * knows. Keep in step with log_redact (test_obs_audit checks each pattern). */
bool obs_may_hold_credential(const char *s);
