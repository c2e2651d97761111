/*
 * schema_files.h - the SQL files of schemas/, compiled into the binary.
 *
 * The Makefile runs scripts/embed-sql.sh over the .sql files of schemas/ to make
 * build/gen/schema_files.c. Files are named NNN_what.sql and sorted by name;
 * NNN is the schema version (PRAGMA user_version) the file migrates to.
 */
#ifndef SD_SCHEMA_FILES_H
#define SD_SCHEMA_FILES_H

typedef struct jobdb_schema_file {
    const char *name; /* "002_metrics.sql" */
    const char *sql;  /* its text, NUL-terminated */
} jobdb_schema_file;

extern const jobdb_schema_file jobdb_schema_files[];
extern const int jobdb_schema_file_count;

#endif
