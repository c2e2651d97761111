/*
 * html.h - writing text from the job database into HTML safely: every string a user (or a run) put
 * there - prompts, errors, paths, settings - goes through html_put, which escapes & < > " '
 * (enough for element text and quoted attribute values). Invalid UTF-8 is not repaired here:
 * the job table holds validated UTF-8 (jobs/job.h).
 *
 *     fputs("<td>", fp); html_put(fp, job->prompt); fputs("</td>", fp);
 */
#ifndef SD_HTML_H
#define SD_HTML_H

#include <stdio.h>

/* Writes s escaped for HTML text and attribute values. NULL writes nothing. */
void html_put(FILE *fp, const char *s);
/* s escaped for HTML as a new string (caller frees); NULL when out of memory. */
char *html_escape(const char *s);

/*
 * The path of target relative to the folder dir, both absolute and canonical ("/a/b/img.png" from
 * "/a/r" gives "../b/img.png"), with each byte outside [A-Za-z0-9._~/-] percent-encoded so it
 * can go into an href or src. Caller frees; NULL when out of memory.
 */
char *html_relative_url(const char *dir, const char *target);

#endif
