// Reaching the network tests' private internet (tests/net_internet.h builds
// it) from the test process and from a sandbox (net_test, vm_net_test).
//
// I's addresses: 198.51.100.10 (allowed.test), .11 (neighbour.test), .53
// (its DNS), 203.0.113.10 (denied.test, www.wild.test), 203.0.113.66,
// 169.254.169.254, 10.1.2.3 (private.test), 172.16.5.5, 192.168.7.7,
// 100.64.1.1. Every one answers HTTP on port 80 with "hello from ADDR".
#pragma once

#include <memory>
#include <string>

#include "base/child.h"
#include "base/fd.h"
#include "sandbox/driver.h"

namespace wb::testing {

// Whether a TCP connection to ip:port (from D) succeeds.
bool Connects(const char* ip, int port);

// `sh -c script` in sb (20 s timeout).
ExecOutcome InternetSh(Sandbox& sb, const std::string& script);
// What an HTTP GET of url (http://HOST[:PORT]/) answers in sb, "" when it
// failed. (busybox nc and nslookup: the static busybox's wget crashes in
// glibc's resolver.)
std::string InternetGet(Sandbox& sb, const std::string& url);
// Whether name resolves in sb (an address line in nslookup's answer).
bool InternetResolves(Sandbox& sb, const std::string& name);

}  // namespace wb::testing
