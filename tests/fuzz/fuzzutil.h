/*
 * fuzzutil.h - what the fuzz harnesses (tests/fuzz/fuzz_*.c) share.
 *
 * Each harness defines LLVMFuzzerTestOneInput(data, size). Under libFuzzer
 * (make fuzz) clang links it with the fuzzer's main; under make check the
 * same file is linked with tests/fuzz/replay.c, which feeds it the files of
 * tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME.
 *
 * Readers that only take a path get the input through fuzz_file: one file
 * per name in a private folder (created on first use under $TMPDIR or
 * /dev/shm, removed at exit), rewritten for every input.
 */
#ifndef SD_FUZZUTIL_H
#define SD_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional one-time setup before the first input (libFuzzer calls it; so does replay.c when defined). */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* The harness's private folder (aborts when it cannot be made). */
const char *fuzz_dir(void);

/* Writes data[0..size) to fuzz_dir()/name and returns that path (valid until the next call). */
const char *fuzz_file(const char *name, const void *data, size_t size);

/* data[0..size) as a new NUL-terminated string (caller frees; aborts when out of memory). */
char *fuzz_strndup(const void *data, size_t size);

/*
 * Splits data at each "\n%%\n" into at most max parts (the last one keeps the
 * rest): parts[i] points into data, lens[i] its length. Returns the count.
 * Harnesses that need several files (vocab.json + merges.txt) read them so.
 */
int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max);

/* Where harnesses add what they read, so the reads are not optimized away. */
extern volatile unsigned fuzz_sink;

struct sd_tensor;
/*
 * Checks the view every reader promises (nbytes = numel x dtype size, data
 * non-NULL when nbytes > 0) and reads every byte of it, so ASan catches a
 * view that reaches outside its buffer. Returns a checksum (keep it alive).
 */
unsigned fuzz_touch_tensor(const struct sd_tensor *t);

/* Aborts with a message when a property the harness checks does not hold. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
