# tests/unit: the aggregation engine (kernels, placement, pool) and the
# optimizer table.
check_PROGRAMS += tests/unit/engine_kernels tests/unit/engine_placement tests/unit/engine_pool
ENGINE_TEST_CFLAGS = $(TEST_CFLAGS) -DRAGG_TEST_DATA='"$(top_srcdir)/tests/unit/data"'
tests_unit_engine_kernels_SOURCES = tests/unit/engine_kernels.c
tests_unit_engine_kernels_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_engine_kernels_LDADD = $(TEST_LIBS)
tests_unit_engine_placement_SOURCES = tests/unit/engine_placement.c
tests_unit_engine_placement_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_engine_placement_LDADD = $(TEST_LIBS)
tests_unit_engine_pool_SOURCES = tests/unit/engine_pool.c
tests_unit_engine_pool_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_unit_engine_pool_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/unit/data/engine-2numa.xml
# The optimizer table against PyTorch (skipped where /usr/bin/python3 has no torch).
check_PROGRAMS += tests/unit/optim_torch
tests_unit_optim_torch_SOURCES = tests/unit/optim_torch.c
tests_unit_optim_torch_CFLAGS = $(TEST_CFLAGS) -DRAGG_TEST_SRCDIR='"$(top_srcdir)/tests/unit"'
tests_unit_optim_torch_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/unit/optim_torch.py
