#include <libpq-fe.h>

/* PG_DIAG_* are character macros Swift cannot import; name the ones we read. */
enum {
    CLIBPQ_DIAG_SQLSTATE = 'C',           /* PG_DIAG_SQLSTATE */
    CLIBPQ_DIAG_MESSAGE_PRIMARY = 'M',    /* PG_DIAG_MESSAGE_PRIMARY */
    CLIBPQ_DIAG_MESSAGE_DETAIL = 'D',     /* PG_DIAG_MESSAGE_DETAIL */
    CLIBPQ_DIAG_MESSAGE_HINT = 'H',       /* PG_DIAG_MESSAGE_HINT */
    CLIBPQ_DIAG_CONSTRAINT_NAME = 'n',    /* PG_DIAG_CONSTRAINT_NAME */
    CLIBPQ_DIAG_COLUMN_NAME = 'c'         /* PG_DIAG_COLUMN_NAME */
};
