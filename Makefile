# vssm-pkcs11: the two commands of the README.
#   make demo   start a local key service, create keys, sign, verify with openssl
#   make check  install test dependencies, build, run every test (unit, mTLS, conformance)
SWIFT ?= swift
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: demo check build test conformance tsan clean

demo: build
	bash conformance/demo.sh

build:
	$(SWIFT) build --product vssm
	$(SWIFT) build --product vssm-pkcs11

check:
	bash scripts/install-deps.sh
	$(SWIFT) build --build-tests
	$(SWIFT) build --product vssm-pkcs11
	$(SWIFT) test --skip-build
	bash conformance/run-all.sh

test:
	$(SWIFT) test

conformance: build
	bash conformance/run-all.sh

# Thread sanitizer run of the server tests (separate build folder; slow).
tsan:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter VSSMServerTests

clean:
	rm -rf .build .build-tsan
