/* Headers UVS binds to. Keep it to what the daemon, bench and tests use. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_version.h>
#include <rte_malloc.h>
#include <rte_eth_ring.h>
#include <rte_telemetry.h>

/* Macros that bindgen cannot turn into functions (shim.c). */
int uvs_errno(void);
void uvs_set_errno(int value);
