# crmstream — top-level build. Plain GNU make: the tree is small, C compiles
# in seconds, and one file shows every target (see docs/decisions.md).
#
#   make            build/crmstream
#   make deps       install missing Debian packages (root) or print the command
#   make demo       deps + build + `crmstream demo`
#   make test       deps + gcc and clang -Werror builds + unit, integration and
#                   dependency tests + the same suite under ASan/UBSan
#   make test-asan  only the sanitizer suite
#   make bench      every benchmark; make bench-NAME runs bench/NAME.sh
#   make clean

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
           -Wno-missing-field-initializers -pthread -Isrc -I/usr/include/postgresql -MMD -MP $(EXTRA_CFLAGS)
LDLIBS  := -lrdkafka -lmicrohttpd -lcurl -lcjson -lsqlite3 -lpq -lyaml -lz -lcrypto -lxxhash -lzstd -lm -pthread $(EXTRA_LDFLAGS)

# Debian 12 packages the build, tests and benchmarks need (docs/decisions.md).
DEPS_PKGS := gcc clang make pkg-config libmicrohttpd-dev libcjson-dev libzstd-dev \
             libsqlite3-dev libyaml-dev zlib1g-dev libssl-dev libxxhash-dev \
             libcmocka-dev libcurl4-openssl-dev redis-server \
             sqlite3 curl jq prometheus tmux wrk valgrind libpq-dev postgresql \
             librdkafka-dev openjdk-17-jre-headless maven \
             libjson-c-dev libjansson-dev libyajl-dev libjsmn-dev

SRC      := $(shell find src -name '*.c' | sort)
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)
LIBOBJ   := $(filter-out $(BUILD)/obj/src/app/main.o,$(OBJ))
TESTSRC  := $(sort $(wildcard tests/unit/test_*.c tests/integration/test_*.c))
TESTBIN  := $(TESTSRC:%.c=$(BUILD)/%)
BENCHES  := $(basename $(notdir $(wildcard bench/*.sh)))
BENCHBIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.PHONY: all build-all deps demo test test-asan test-run check-clang bench clean
all: $(BUILD)/crmstream
build-all: all $(TESTBIN) $(BENCHBIN)

$(BUILD)/crmstream: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(LIBOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIBOBJ) $(LDLIBS) -lcmocka

$(BUILD)/bench/%: bench/%.c $(LIBOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBOBJ) $(LDLIBS)

# The JSON libraries compared with cJSON (docs/decisions.md "JSON"): bench only.
$(BUILD)/bench/ingest_json: LDLIBS += -ljansson -lyajl -ldl

deps:
	@missing=""; for p in $(DEPS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -z "$$missing" ]; then echo "deps: all present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing || exit 1; \
	else \
	  echo "deps: missing packages; run: sudo apt-get update && sudo apt-get install -y$$missing" >&2; exit 1; \
	fi
	@# npm packages of the SDK tests (tests/npm), pinned by package-lock.json.
	@if [ ! -f tests/npm/node_modules/.package-lock.json ] || \
	    [ tests/npm/package-lock.json -nt tests/npm/node_modules/.package-lock.json ]; then \
	  echo "deps: npm ci in tests/npm"; \
	  cd tests/npm && npm ci --no-audit --no-fund --loglevel=error; \
	fi
	@# the Standard Webhooks verifier of the webhook tests (tests/webhook), pinned likewise.
	@if [ ! -f tests/webhook/node_modules/.package-lock.json ] || \
	    [ tests/webhook/package-lock.json -nt tests/webhook/node_modules/.package-lock.json ]; then \
	  echo "deps: npm ci in tests/webhook"; \
	  cd tests/webhook && npm ci --no-audit --no-fund --loglevel=error; \
	fi
	@# @bufbuild/cel for the CEL differential test (tests/cel), pinned likewise.
	@if [ ! -f tests/cel/node_modules/.package-lock.json ] || \
	    [ tests/cel/package-lock.json -nt tests/cel/node_modules/.package-lock.json ]; then \
	  echo "deps: npm ci in tests/cel"; \
	  cd tests/cel && npm ci --no-audit --no-fund --loglevel=error; \
	fi
	@# Apache Kafka's broker jars for the Kafka-bus tests (tests/kafka/pom.xml) into tests/kafka/m2,
	@# classpath in tests/kafka/classpath.txt (without them those tests print a SKIP); kafkajs likewise.
	@if [ ! -s tests/kafka/classpath.txt ] || [ tests/kafka/pom.xml -nt tests/kafka/classpath.txt ]; then \
	  echo "deps: mvn dependency:build-classpath in tests/kafka"; \
	  if mvn -q -B -f tests/kafka/pom.xml -Dmaven.repo.local=$(CURDIR)/tests/kafka/m2 dependency:build-classpath \
	      -Dmdep.outputFile=$(CURDIR)/tests/kafka/classpath.txt > tests/kafka/mvn.log 2>&1; then \
	    touch tests/kafka/classpath.txt; \
	  else rm -f tests/kafka/classpath.txt; cat tests/kafka/mvn.log >&2; \
	    echo "deps: Maven could not fetch the Kafka jars: the real-broker test will SKIP" >&2; fi; \
	fi
	@if [ ! -f tests/kafka/node_modules/.package-lock.json ] || \
	    [ tests/kafka/package-lock.json -nt tests/kafka/node_modules/.package-lock.json ]; then \
	  echo "deps: npm ci in tests/kafka (kafkajs)"; \
	  cd tests/kafka && npm ci --no-audit --no-fund --loglevel=error; \
	fi

demo: deps all
	$(BUILD)/crmstream demo

# The suite: every test binary, then the shell checks; tests/run.sh prints
# the final "N passed, N failed" line.
test-run: all $(TESTBIN)
	tests/run.sh $(BUILD)

check-clang:
	$(MAKE) --no-print-directory CC=clang BUILD=build-clang OPT=-O1 build-all

test: deps
	$(MAKE) --no-print-directory check-clang
	$(MAKE) --no-print-directory test-run
	$(MAKE) --no-print-directory test-asan

test-asan:
	$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test-run

bench: $(addprefix bench-,$(BENCHES))
bench-%: all $(BENCHBIN)
	BUILD=$(BUILD) bench/$*.sh

clean:
	rm -rf build build-asan build-clang

-include $(OBJ:.o=.d) $(TESTBIN:=.d) $(BENCHBIN:=.d)
