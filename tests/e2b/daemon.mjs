// The E2B SDK's tests' daemon (tests/lib/daemon.mjs) in their own uid range
// (tests/uid_ranges.h, kE2bSdkTest). WARMBOX_E2B_STATE_DIR gives every test
// one state dir to reuse (development: an image store with base built).
import * as lib from '../lib/daemon.mjs'

export { SOURCE_DIR, BUILD_DIR, WARMBOX, skipReason, eventually } from '../lib/daemon.mjs'

const UID_BASE = 1760000000

export const { Daemon, pidsInUidRange } =
  lib.forSuite({ uidBase: UID_BASE, name: 'e2b', stateDir: process.env.WARMBOX_E2B_STATE_DIR })
