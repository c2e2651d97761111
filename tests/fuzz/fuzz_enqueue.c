/*
 * fuzz_enqueue.c - the prompt-file readers of `sdrender enqueue` (enqueue_parse_file: .txt, .jsonl,
 * .csv with their row checks) and the CSV tokenizer itself on bytes in memory. Input: one byte
 * choosing the format (and skip_bad), then the file. Property: with skip_bad every row handed out
 * passes the job spec check.
 */
#include "csv.h"
#include "enqueue.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *names[] = {"in.txt", "in.jsonl", "in.csv"};
    int fmt = data[0] % 3, skip_bad = (data[0] >> 2) & 1;
    data++;
    size--;
    enqueue_options o;
    enqueue_options_init(&o);
    o.skip_bad = skip_bad;
    enqueue_batch b = {0};
    sd_error err = {0};
    if (enqueue_parse_file(fuzz_file(names[fmt], data, size), &o, &b, &err) == 0) {
        for (size_t i = 0; i < b.n; i++)
            if (sd_job_spec_check(&b.jobs[i], &err) < 0) fuzz_fail("row %zu passed enqueue but not the spec check: %s", i, err.msg);
    }
    enqueue_batch_free(&b);
    if (fmt == 2) {
        csv_reader r;
        csv_record rec = {0};
        csv_init(&r, (const char *)data, size);
        int rc, guard = 0;
        while ((rc = csv_next(&r, &rec, &err)) != 0 && guard++ < 100000) {
        }
        csv_record_free(&rec);
    }
    return 0;
}
