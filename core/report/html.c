/* HTML escaping and relative URLs for the report page. */
#include "html.h"

#include <stdlib.h>
#include <string.h>

void html_put(FILE *fp, const char *s) {
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&#39;", fp); break;
        default: fputc(*s, fp);
        }
    }
}

char *html_escape(const char *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return NULL;
    html_put(fp, s);
    if (fclose(fp) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Appends s to fp percent-encoded (URL path characters and '/' kept). */
static void url_put(FILE *fp, const char *s, size_t n) {
    static const char keep[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~/-";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c && strchr(keep, c)) fputc(c, fp);
        else fprintf(fp, "%%%02X", c);
    }
}

char *html_relative_url(const char *dir, const char *target) {
    /* the longest common prefix that ends at a folder boundary */
    size_t common = 0;
    for (size_t i = 0; dir[i] && dir[i] == target[i]; i++)
        if (dir[i] == '/') common = i + 1;
    size_t dl = strlen(dir);
    if (strncmp(dir, target, dl) == 0 && target[dl] == '/') common = dl + 1;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return NULL;
    /* one "../" per folder of dir below the common prefix */
    if (common <= dl) {
        int ups = dl > common ? 1 : 0;
        for (size_t i = common; i < dl; i++)
            if (dir[i] == '/' && dir[i + 1]) ups++;
        for (int i = 0; i < ups; i++) fputs("../", fp);
    }
    url_put(fp, target + common, strlen(target + common));
    if (fclose(fp) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
