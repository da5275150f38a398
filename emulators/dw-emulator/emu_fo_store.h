/*
 * emu_fo_store: what the F&O emulator adds to emu_store's tables: a monotonic row version per row
 * (column _rowversion, stamped from the schema's version sequence by a trigger, since the F&O
 * metadata files carry no generated:version column), the enum types of the metadata (stored as
 * integers, exchanged as member names, as F&O OData does) and the output form of a stored row.
 */
#ifndef EMU_FO_STORE_H
#define EMU_FO_STORE_H

#include <stdbool.h>

#include <jansson.h>

#include "dw_err.h"
#include "emu_store.h"

#define EMU_FO_ROWVERSION "_rowversion"
#define EMU_FO_NS         "Microsoft.Dynamics.DataEntities"

/* Add the row-version column and its trigger to every table of st (idempotent; again after an
 * admin reset). */
dw_err_t emu_fo_store_prepare(emu_store_t *st, char *errstr, size_t errstr_size);

/* The enum type name of column c of t ("NoYes"), borrowed from the metadata; NULL when c is not
 * an enum column or names no enum. */
const char *emu_fo_col_enum(const emu_table_t *t, const emu_col_t *c);
/* The member name of value v of c's enum (borrowed), NULL when v is not a member. */
const char *emu_fo_enum_member(const emu_table_t *t, const emu_col_t *c, long long v);
/* The value of member name of c's enum; false when it is not a member. */
bool emu_fo_enum_value(const emu_table_t *t, const emu_col_t *c, const char *member, long long *v);

/* True when t is company specific (has a dataAreaId column). */
bool emu_fo_company_specific(const emu_table_t *t);

/* The output form of a stored row db (to_jsonb of the table row, borrowed): every column that
 * is not dropped, enums as member names, datetimes as "YYYY-MM-DDTHH:MM:SSZ", dates as
 * "YYYY-MM-DD". omit_null_dates: leave out date/datetime columns that are null (data events).
 * New reference. */
json_t *emu_fo_row_out(const emu_table_t *t, json_t *db, bool omit_null_dates);

/* The row version of a stored row (0 when absent). */
long long emu_fo_row_version(json_t *db);

/* A stable GUID for the record of t with key values taken from row (output or storage form):
 * the PrimaryEntityId of data events. out: 37 bytes. */
void emu_fo_record_guid(const emu_table_t *t, json_t *row, char out[37]);

#endif
