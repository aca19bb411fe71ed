/* Validation of session events as posted to POST /v1/sessions/{id}/events
 * (shape only; references and duplicates are the store's to check). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* 0 when events[i] is acceptable from this sender; 400 (bad shape or unknown
 * type) or 403 (an agent-side event without the admin key), with msg naming
 * the field. */
int server_check_event(json_t *ev, size_t i, bool admin, char *msg, size_t n);
