/*
 * progress.h - progress on stderr for long work: a bar with rate and ETA
 * when stderr is a terminal, plain lines (at most one every few seconds,
 * and the last one) when it is a log file.
 */
#ifndef SD_PROGRESS_H
#define SD_PROGRESS_H

typedef struct cli_progress {
    const char *label;
    const char *unit;   /* "steps", "images" */
    int total;
    int done;
    int tty;
    int quiet;
    double t0;
    double last_print;
} cli_progress;

double cli_now(void); /* monotonic seconds */
void progress_start(cli_progress *p, const char *label, const char *unit, int total, int quiet);
void progress_update(cli_progress *p, int done);
void progress_end(cli_progress *p);

#endif
