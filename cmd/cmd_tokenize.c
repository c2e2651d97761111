/* sdrender tokenize: the 77 token ids the text encoder sees for a prompt. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "model.h"
#include "tokenizer.h"

static void usage(FILE *fp) {
    fprintf(fp, "usage: sdrender tokenize -m MODEL -p PROMPT [--tokenizer P] [--config YAML]\n\n"
                "Prints the 77 CLIP token ids of PROMPT on one line (bos, tokens, eos, padding), as the\n"
                "model's text encoder receives them. A note on stderr says when the prompt is truncated.\n\n"
                "  -m, --model PATH     diffusers folder or single checkpoint\n"
                "  -p, --prompt TEXT    the prompt\n"
                "      --tokenizer P    tokenizer folder or bpe_simple_vocab_16e6.txt.gz (single files)\n"
                "      --config YAML    LDM config of a single file\n"
                "  -h, --help           this text\n");
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"prompt", required_argument, 0, 'p'},
                                             {"tokenizer", required_argument, 0, 't'},
                                             {"config", required_argument, 0, 'c'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL;
    sd_model_opts opts = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 't': opts.tokenizer = optarg; break;
        case 'c': opts.config = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) return cli_usage_error("tokenize: unexpected argument '%s'", argv[optind]);
    if (!model || !prompt) return cli_usage_error("tokenize: -m MODEL and -p PROMPT are required");
    sd_model m;
    sd_error err = {0};
    if (sd_model_open(&m, model, &opts, &err) < 0) return cli_fail(&err);
    tokenizer_bpe *tok = NULL;
    int32_t ids[77];
    int n = 0;
    int rc = sd_model_open_tokenizer(&m, &tok, &err);
    if (rc == 0) rc = tokenizer_encode_padded(tok, prompt, ids, m.clip.max_positions < 77 ? m.clip.max_positions : 77, &n, &err);
    if (rc == 0) {
        int len = m.clip.max_positions < 77 ? m.clip.max_positions : 77;
        for (int i = 0; i < len; i++) printf("%s%d", i ? " " : "", (int)ids[i]);
        printf("\n");
        if (n > len - 2) fprintf(stderr, "sdrender: note: the prompt has %d tokens; only the first %d are used\n", n, len - 2);
    }
    if (tok) tokenizer_free(tok);
    sd_model_close(&m);
    return rc < 0 ? cli_fail(&err) : 0;
}
