/*
 * emu_seed: `dw-emulator seed`: fills an emulated system's tables (generated from
 * schemas/metadata/<system>/ *.json by emu_store) with deterministic, realistic rows through COPY:
 * companies, currencies, groups, customers, contacts, vendors, products, orders, lines. The same
 * arguments give the same rows (a seeded PRNG per table and row); lookups (Dataverse) and code
 * references (F&O columns named like another entity's key, e.g. CustomerGroupId) point at seeded
 * rows of the same company; tables a seeded table refers to get a few rows when not asked for.
 */
#ifndef EMU_SEED_H
#define EMU_SEED_H

/* seed --system dv|fo [--pg DSN] [--schema NAME] [--metadata DIR] --records set=N[,set=N...]
 * [--seed N] [--quiet]. argv[0] is "seed". Returns the process exit code (0, 1, 2). */
int emu_seed_main(int argc, char **argv);

#endif
