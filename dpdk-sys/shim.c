/* Hand-written glue for DPDK macros that are not functions. */
#include "wrapper.h"

/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int uvs_errno(void) { return rte_errno; }
void uvs_set_errno(int value) { rte_errno = value; }

/* lib.rs defines RTE_ETH_RSS_L3_SRC_ONLY by hand (bindgen drops bit 63). */
_Static_assert(RTE_ETH_RSS_L3_SRC_ONLY == (1ULL << 63),
               "RTE_ETH_RSS_L3_SRC_ONLY in dpdk-sys/src/lib.rs is out of date");
