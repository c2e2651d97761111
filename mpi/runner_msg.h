/* runner_msg.h - jobs as JSON messages between the master and its workers. */
#ifndef SD_RUNNER_MSG_H
#define SD_RUNNER_MSG_H

#include <jansson.h>

#include "err.h"
#include "job.h"

/* {"id", "prompt", "negative_prompt", "seed", ..., "output", "model_sha256"}; NULL when out of memory. */
json_t *runner_job_to_json(const sd_job *job, const char *output_path, const char *model_sha256);
/* Fills *job (caller frees with sd_job_free) and points *output / *model_sha256 into j (valid while j lives). */
int runner_job_from_json(json_t *j, sd_job *job, const char **output, const char **model_sha256, sd_error *err);

#endif
