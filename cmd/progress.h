/*
 * progress.h - progress on stderr for long work: a bar with rate and ETA
 * when stderr is a terminal, plain lines (at most one every few seconds,
 * and the last one) when it is a log file (the progress_bar says which).
 */
#ifndef SD_PROGRESS_H
#define SD_PROGRESS_H

typedef struct progress_bar {
    const char *label;
    const char *unit;   /* "steps", "images" */
    int total;
    int done;
    int tty;
    int quiet;
    double t0;
    double last_print;
} progress_bar;

void progress_start(progress_bar *p, const char *label, const char *unit, int total, int quiet);
void progress_update(progress_bar *p, int done);
void progress_end(progress_bar *p);
/* A pipeline step callback (sd_pipeline_step_fn): ctx is the progress_bar; never cancels. */
int progress_step(void *ctx, int done, int total);

#endif
