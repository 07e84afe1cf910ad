# tests/unit: the gradient codecs (src/compress), one suite over the table.
check_PROGRAMS += tests/unit/compress_codecs
tests_unit_compress_codecs_SOURCES = tests/unit/compress_codecs.c
tests_unit_compress_codecs_CFLAGS = $(TEST_CFLAGS)
tests_unit_compress_codecs_LDADD = $(TEST_LIBS)
