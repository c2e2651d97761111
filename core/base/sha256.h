/*
 * sha256.h - SHA-256 (FIPS 180-4) of a buffer or a file, as lowercase hex.
 *
 * Used for the PNG hashes recorded with every finished job and for the model
 * file hash recorded with every run. No crypto library: plain C, streaming.
 *
 *     char hex[SD_SHA256_HEX_LEN + 1];
 *     if (sd_sha256_file("model.safetensors", hex, &err) < 0) ...
 *
 *     sd_sha256 c;                          // incremental: same result as one call
 *     sd_sha256_init(&c);
 *     sd_sha256_update(&c, part1, n1);
 *     sd_sha256_update(&c, part2, n2);
 *     sd_sha256_final(&c, digest);          // 32 bytes
 */
#ifndef SD_SHA256_H
#define SD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SD_SHA256_DIGEST_LEN 32
#define SD_SHA256_HEX_LEN 64

typedef struct sd_sha256 {
    uint32_t h[8];       /* chaining state */
    uint64_t nbytes;     /* message length so far */
    uint8_t block[64];   /* partial block */
    size_t nblock;       /* bytes in block */
} sd_sha256;

void sd_sha256_init(sd_sha256 *c);
void sd_sha256_update(sd_sha256 *c, const void *data, size_t n);
/* Pads, writes the 32-byte digest and leaves c ready for reuse after sd_sha256_init. */
void sd_sha256_final(sd_sha256 *c, uint8_t digest[SD_SHA256_DIGEST_LEN]);

/* 32-byte digest as 64 lowercase hex characters plus NUL. */
void sd_sha256_to_hex(const uint8_t digest[SD_SHA256_DIGEST_LEN], char hex[SD_SHA256_HEX_LEN + 1]);
/* Hex digest of a buffer. */
void sd_sha256_buffer(const void *data, size_t n, char hex[SD_SHA256_HEX_LEN + 1]);
/* Hex digest of a file, read in 1 MiB pieces (multi-GB model files need no memory). */
int sd_sha256_file(const char *path, char hex[SD_SHA256_HEX_LEN + 1], sd_error *err);
/* 1 if s is exactly 64 lowercase hex characters (a digest as stored in the job table). */
int sd_sha256_is_hex(const char *s);

#endif
