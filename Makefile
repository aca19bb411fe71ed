# shed — one binary, one library, one test runner.
# `make` builds build/shed; `make check` runs every test; see `make help`.

O        ?= build
CC       ?= cc
PKGS     := libcurl jansson libseccomp libmicrohttpd sqlite3 libarchive libpcre2-8
# build/shed does not link these: every `shed run` and every sandbox init loads
# the binary, and their dependency trees (39 shared objects) cost ~8 ms each
# time. src/base/lazy.c dlopen()s each at first use; their CFLAGS stay above,
# and unit tests, fuzzers and benchmarks keep linking all of PKGS.
LAZY_PKGS := libcurl libmicrohttpd sqlite3 libarchive
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
SHED_LIBS  := $(shell pkg-config --libs $(filter-out $(LAZY_PKGS),$(PKGS)) 2>/dev/null)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wno-format-nonliteral -Wno-format-truncation -Werror
OPT      ?= -O2 -g
override CFLAGS += $(OPT) -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing -pthread $(WARN) -Isrc \
            -DSHED_VERSION=\"$(VERSION)\" $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  += -pthread $(EXTRA_LDFLAGS)
LDLIBS   += $(PKG_LIBS) -lm

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/unit/%)

.SECONDARY:

.PHONY: all check unit asan bench fuzz format demo clean help deps soak

all: $(O)/shed $(O)/probe

help:
	@echo "make            build $(O)/shed"
	@echo "make demo       install what is missing, build, run the end-to-end demo"
	@echo "make check      build and run every test (unit + integration)"
	@echo "make asan       the same suite under AddressSanitizer + UBSan"
	@echo "make bench      benchmarks against their anchors"
	@echo "make fuzz       libFuzzer harnesses for a bounded time (FUZZ_SECONDS)"
	@echo "make format     apply .clang-format"

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/libshed.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

# Nor libm: its four functions shed calls come from src/base/fpmath.c.
SHED_MATH := -Wl,-u,shed_trunc,--defsym=trunc=shed_trunc,--defsym=fmax=shed_fmax,--defsym=fmin=shed_fmin,--defsym=llround=shed_llround

$(O)/shed: $(O)/src/shed.o $(O)/libshed.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SHED_LIBS) $(SHED_MATH)

# The probe runs inside sandboxes whose /usr may be anything: static, no deps.
$(O)/probe: tests/probe/probe.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -static -o $@ $<

$(O)/tests/unit/%: $(O)/tests/unit/%.o $(O)/tests/unit/harness.o $(O)/libshed.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN)

deps:
	scripts/install-deps

check: all unit
	SHED=$(abspath $(O)/shed) PROBE=$(abspath $(O)/probe) SHED_BUILD=$(abspath $(O)) \
	  tests/run $(UNIT_BIN) $(sort $(wildcard tests/integration/*.sh))

asan:
	$(MAKE) O=build/asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" OPT="-O1 -g" check

bench: all
	SHED=$(abspath $(O)/shed) SHED_BUILD=$(abspath $(O)) bench/run

fuzz:
	tests/fuzz/run $(FUZZ_SECONDS)

soak: all
	SHED=$(abspath $(O)/shed) tests/soak/run

demo:
	scripts/install-deps
	$(MAKE) all
	$(O)/shed demo

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(O)/src/shed.d $(UNIT_BIN:=.d) $(O)/tests/unit/harness.d
