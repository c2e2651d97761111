# sdrender build.
#   make                 build/sdrender (optimized for this CPU: -O3 -march=native)
#   make check           build and run every test (tests/test_*.c, cmocka)
#   make check SANITIZE=1  the same under ASan + UBSan (objects in build/san)
#   make check-slurm     start a two-node Slurm cluster here and render through slurm/*.sbatch
#   make check-report    load `sdrender report`'s page in headless chromium (installs chromium if missing)
#   make PORTABLE=1      no -march=native (x86-64-v2), for binaries copied to other machines
#   make bench           time U-Net, VAE and text encoder on the full SD 1.5 architecture
#   make demo            the demo model end to end: render a CFG sweep under mpirun, score it, HTML report
#   make fuzz FUZZ_S=N   build the libFuzzer harnesses (tests/fuzz/, clang; objects in build/fuzz) and run
#                        each N seconds (default 30); fails when one finds a crash, leak, hang or OOM
# Every library is found with pkg-config; see scripts/install-deps.sh.

PKGS     := openblas libpng zlib jansson yaml-0.1 sqlite3 ompi
CC       ?= cc
BUILD    ?= build
OPT      ?= -O3

ifeq ($(SANITIZE),1)
BUILD    := build/san
# float-cast-overflow is not part of GCC's "undefined" group (clang's fuzz builds have it): an
# out-of-range float to int conversion is undefined behaviour too (the fuzz_config bug of issue 16)
OPT      := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow \
            -fno-sanitize-recover=undefined,float-cast-overflow
LDSAN    := -fsanitize=address,undefined,float-cast-overflow
endif

ifeq ($(PORTABLE),1)
ARCH     := -march=x86-64-v2 -mtune=generic
else
ARCH     := -march=native
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# oneDNN (libdnnl-dev) runs ops_gemm's float32 products when present: its AVX-512 sgemm measured about
# twice OpenBLAS's on the AVX-512 EPYC (README). Debian ships no dnnl.pc, hence the header test.
# OpenBLAS stays for LAPACK. `make PORTABLE=1` leaves oneDNN out (it would pick kernels for the machine
# it runs on, not the build's x86-64-v2): its float32 GEMM is core/ops/ops_gemm_fma.c's kernel, compiled
# for AVX2 + FMA and run where the CPU has them, else OpenBLAS's. `make DNNL=0` builds without it too.
ifneq ($(PORTABLE),1)
ifneq ($(DNNL),0)
ifeq ($(shell pkg-config --exists dnnl 2>/dev/null && echo yes),yes)
PKG_CFLAGS += $(shell pkg-config --cflags dnnl) -DSD_HAVE_DNNL
PKG_LIBS   += $(shell pkg-config --libs dnnl)
else ifneq ($(wildcard /usr/include/oneapi/dnnl/dnnl.h),)
PKG_CFLAGS += -DSD_HAVE_DNNL
PKG_LIBS   += -ldnnl
endif
endif
endif

# core/ is one folder per subsystem (base, formats, model, ops, nn, text, sampler, pipeline, eval);
# every one of them is built and on the include path. A .c file anywhere else under core/ (at its
# top level, or one folder deeper) is not built: scripts/check-layout.sh fails on it.
CORE_DIRS := $(sort $(patsubst %/,%,$(dir $(wildcard core/*/*.c core/*/*.h))))

CFLAGS   := -std=c11 $(OPT) $(ARCH) -g -fopenmp -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation \
            -D_GNU_SOURCE $(PKG_CFLAGS) $(addprefix -I,$(CORE_DIRS)) -Ijobs -Impi $(EXTRA_CFLAGS)
LDFLAGS  := -fopenmp $(LDSAN)
LDLIBS   := $(PKG_LIBS) -lcmocka -lm -lpthread

CORE_SRC := $(wildcard core/*/*.c)
JOBS_SRC := $(wildcard jobs/*.c)
MPI_SRC  := $(wildcard mpi/*.c)
CMD_SRC  := $(wildcard cmd/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TESTUTIL := tests/testutil.c
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_LIB := tests/fuzz/fuzzutil.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

CORE_OBJ := $(call obj,$(CORE_SRC))
JOBS_OBJ := $(call obj,$(JOBS_SRC)) $(BUILD)/obj/gen/schema_files.o
MPI_OBJ  := $(call obj,$(MPI_SRC))
CMD_OBJ  := $(call obj,$(CMD_SRC))
LIBS     := $(BUILD)/libsdmpi.a $(BUILD)/libsdjobs.a $(BUILD)/libsdcore.a
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
# each fuzz harness built with the normal compiler and a plain main() that replays files through it
# (tests/fuzz/replay.c): make check runs the corpus and the regression inputs without clang
REPLAYS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz-replay/%,$(FUZZ_SRC))

.PHONY: all check check-slurm check-report bench demo clean tests print-sources fuzz fuzz-build
.DELETE_ON_ERROR:
.SECONDARY:

all: $(BUILD)/sdrender

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# schemas/*.sql are compiled into libsdjobs (jobs/schema_files.h), so the binary carries its schema.
SCHEMA_SQL := $(sort $(wildcard schemas/*.sql))
$(BUILD)/gen/schema_files.c: $(SCHEMA_SQL) scripts/embed-sql.sh
	@mkdir -p $(dir $@); scripts/embed-sql.sh $@ $(SCHEMA_SQL)
$(BUILD)/obj/gen/schema_files.o: $(BUILD)/gen/schema_files.c
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# scripts/demo-model/ (the demo model's diffusers folder, written by scripts/train-demo-model.py) is embedded into libsdcore (core/model/demomodel.h)
DEMO_FILES := $(shell find scripts/demo-model -type f 2>/dev/null)
$(BUILD)/gen/demo_model.c: $(DEMO_FILES) scripts/embed-files.sh
	@mkdir -p $(dir $@); scripts/embed-files.sh $@ scripts/demo-model
$(BUILD)/obj/gen/demo_model.o: $(BUILD)/gen/demo_model.c
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsdcore.a: $(CORE_OBJ) $(BUILD)/obj/gen/demo_model.o
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(BUILD)/libsdjobs.a: $(JOBS_OBJ)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $(if $^,$^,)
$(BUILD)/libsdmpi.a: $(MPI_OBJ)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $(if $^,$^,)

$(BUILD)/sdrender: $(CMD_OBJ) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TESTUTIL)) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(call obj,$(TESTUTIL)) $(LIBS) $(LDLIBS)

$(BUILD)/fuzz-replay/%: $(BUILD)/obj/tests/fuzz/%.o $(call obj,$(FUZZ_LIB) tests/fuzz/replay.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc -o $@ $< $(call obj,$(FUZZ_LIB) tests/fuzz/replay.c) \
	    $(LIBS) $(LDLIBS)

tests: $(TESTS) $(BUILD)/sdrender $(REPLAYS)

check: tests
	@scripts/check-layout.sh
	@SDRENDER_BUILD=$(BUILD) scripts/run-tests.sh $(TESTS)
	@scripts/fuzz-replay.sh $(REPLAYS)

# libFuzzer: the core, jobs/ and the harnesses compiled by clang with the fuzzer's coverage hooks and
# ASan + UBSan, in their own folder (no oneDNN: its prebuilt code has no coverage hooks anyway)
FUZZ_CC     ?= clang
FUZZ_S      ?= 30
FUZZ_BUILD  := build/fuzz
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer -fopenmp $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Wall \
               -Wno-unused-parameter -Wno-unknown-warning-option -Wno-pass-failed -D_GNU_SOURCE \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(addprefix -I,$(CORE_DIRS)) -Ijobs
FUZZ_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
fuzzobj      = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(1))
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "FUZZCC $<"; $(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/obj/gen/schema_files.o: $(BUILD)/gen/schema_files.c
	@mkdir -p $(dir $@)
	@echo "FUZZCC $<"; $(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/libsdcore.a: $(call fuzzobj,$(CORE_SRC))
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(FUZZ_BUILD)/libsdjobs.a: $(call fuzzobj,$(JOBS_SRC)) $(FUZZ_BUILD)/obj/gen/schema_files.o
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(call fuzzobj,$(FUZZ_LIB)) $(FUZZ_BUILD)/libsdjobs.a $(FUZZ_BUILD)/libsdcore.a
	$(FUZZ_CC) -fopenmp $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

# every harness FUZZ_S seconds, one after the other (scripts/fuzz.sh: limits, corpus, artifacts)
fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_S) $(FUZZ_BINS)

# a real two-node Slurm cluster on this machine renders through slurm/*.sbatch (installs Slurm if missing)
check-slurm: tests
	@scripts/install-deps.sh --slurm
	@SDRENDER_BUILD=$(BUILD) tests/slurm/run.sh

# the report page in a real browser: no console errors, the DOM's images and metric rows, paging, a
# non-blank screenshot (tests/test_report_browser.c; plain `make check` skips it)
check-report: tests
	@scripts/install-deps.sh --browser
	@SDRENDER_BUILD=$(BUILD) SDRENDER_BROWSER=1 scripts/run-tests.sh $(BUILD)/tests/test_report_browser

bench: $(BUILD)/sdrender
	$(BUILD)/sdrender bench -W 512 -H 512

# installs missing packages first, so it works on a fresh Debian machine
demo:
	scripts/install-deps.sh
	$(MAKE) $(BUILD)/sdrender
	scripts/demo.sh $(BUILD)/sdrender

clean:
	rm -rf build

# the sources this Makefile builds, one per line (scripts/check-layout.sh compares them with the tree)
print-sources:
	@printf '%s\n' $(CORE_SRC) $(JOBS_SRC) $(MPI_SRC) $(CMD_SRC) $(TEST_SRC) $(TESTUTIL) $(FUZZ_SRC) $(FUZZ_LIB) \
	    tests/fuzz/replay.c

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
