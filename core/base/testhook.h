/*
 * testhook.h - hooks the fault tests (tests/test_faults.c) use to reach
 * narrow windows of a run; inert unless their environment variables are set.
 *
 *   SDRENDER_TEST_STALL=WHERE      stall at the Nth event WHERE of this process:
 *                                  "png" (a PNG's temporary file half written),
 *                                  "commit" (the job database syncing a commit)
 *   SDRENDER_TEST_STALL_AT=N       which event (default 1)
 *   SDRENDER_TEST_STALL_MARK=FILE  created (holding the pid) when the stall begins,
 *                                  so the test knows when to kill; only the process
 *                                  that creates it stalls (the first of a run's ranks)
 *   SDRENDER_TEST_STALL_S=S        how long to stall (default 30 s)
 *   SDRENDER_TEST_RENDER_LOG=FILE  each render appends "JOB_ID PID\n" (counts renders)
 */
#ifndef SD_TESTHOOK_H
#define SD_TESTHOOK_H

#include <stdint.h>

/* Stalls when this is the event SDRENDER_TEST_STALL names and its turn has come. */
void sd_test_stall(const char *where);

/* Appends one line for a render of job_id to $SDRENDER_TEST_RENDER_LOG (if set). */
void sd_test_log_render(int64_t job_id);

#endif
