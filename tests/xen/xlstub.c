/*
 * xlstub.c - LD_PRELOAD shim that lets the real `xl -N create` (dry run)
 * run on a machine without a Xen hypervisor.
 *
 * `xl -N create FILE` parses FILE with xl's own config parser
 * (parse_config_data) and prints the resulting libxl_domain_config as
 * JSON, but before that it allocates a libxl context, which opens the
 * hypervisor (privcmd), xenstore and the event-channel device, and the
 * parser asks the hypervisor for its version, capabilities and CPU
 * counts.  Each stub below replaces exactly one of those calls with a
 * harmless dummy answer.  Nothing here is ever used to start a domain.
 *
 * libxenlight references these symbols with version VERS_4.17.0; the
 * unversioned definitions of a preloaded object still take precedence.
 * If a new config key makes xl crash (SIGSEGV), it reached another
 * libxenctrl/xenstore call with the dummy handle: stub that one here.
 *
 * Build: gcc -shared -fPIC -o xlstub.so xlstub.c -lxenlight
 */
#include <stdio.h>
#include <string.h>
#include <xenctrl.h>
#include <xenstore.h>
#include <xenevtchn.h>
#include <libxl.h>

/*
 * One zeroed block serves as every opaque handle: callers only test it
 * for NULL and pass it back to the (stubbed) functions below.
 */
static long dummy_handle[512];

/* libxl_ctx_alloc(): "cannot open libxc handle" without /dev/xen/privcmd. */
xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return (xc_interface *)dummy_handle;
}

/* libxl_ctx_free(): must not free the dummy handle. */
int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    return 0;
}

/* libxl_ctx_alloc(): needs a xenstore connection (xenstored not running). */
struct xs_handle *xs_open(unsigned long flags)
{
    (void)flags;
    return (struct xs_handle *)dummy_handle;
}

/* libxl_ctx_free(): must not free the dummy handle. */
void xs_close(struct xs_handle *xsh)
{
    (void)xsh;
}

/*
 * libxl event machinery: needs /dev/xen/evtchn.  Not reached by a 4.17
 * dry run (libxl opens it lazily), kept so a future path fails softly.
 */
xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned int open_flags)
{
    (void)logger; (void)open_flags;
    return (xenevtchn_handle *)dummy_handle;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    (void)xce;
    return 0;
}

/* No event channel fd to poll: -1 keeps it out of the poll set. */
int xenevtchn_fd(xenevtchn_handle *xce)
{
    (void)xce;
    return -1;
}

/*
 * Hypervisor version queries (libxl_get_version_info, used by the
 * parser e.g. to pick defaults): pretend to be Xen 4.17.0 on x86_64
 * with PV and HVM support.
 */
int xc_version(xc_interface *xch, int cmd, void *arg)
{
    (void)xch;
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | 17;
    case XENVER_extraversion:
        snprintf(arg, sizeof(xen_extraversion_t), "%s", ".0");
        return 0;
    case XENVER_capabilities:
        snprintf(arg, sizeof(xen_capabilities_info_t), "%s",
                 "xen-3.0-x86_64 hvm-3.0-x86_64");
        return 0;
    case XENVER_pagesize:
        return 4096;
    case XENVER_compile_info:
        memset(arg, 0, sizeof(xen_compile_info_t));
        return 0;
    case XENVER_changeset:
        snprintf(arg, sizeof(xen_changeset_info_t), "%s", "stub");
        return 0;
    case XENVER_commandline:
        memset(arg, 0, sizeof(xen_commandline_t));
        return 0;
    case XENVER_platform_parameters:
        memset(arg, 0, sizeof(xen_platform_parameters_t));
        return 0;
    case XENVER_get_features:
        /* Caller sets submap_idx; report no optional features. */
        ((xen_feature_info_t *)arg)->submap = 0;
        return 0;
    default:
        return 0;
    }
}

/*
 * CPU/NUMA counts (libxl_get_max_cpus & co.), used to size the CPU and
 * node bitmaps for vcpus, maxvcpus, cpus= and cpus_soft=.
 */
#define STUB_CPUS 4

int xc_get_max_cpus(xc_interface *xch)
{
    (void)xch;
    return STUB_CPUS;
}

int xc_get_online_cpus(xc_interface *xch)
{
    (void)xch;
    return STUB_CPUS;
}

int xc_get_max_nodes(xc_interface *xch)
{
    (void)xch;
    return 1;
}

/*
 * CPU topology (libxl_get_cpu_topology), needed by cpus = "nodes:N"
 * (otherwise libxenctrl dereferences the dummy handle and crashes).  Called once with cputopo == NULL to get the count,
 * then again with a buffer.  All CPUs: one core each, socket 0, node 0.
 */
int xc_cputopoinfo(xc_interface *xch, unsigned *max_cpus,
                   xc_cputopo_t *cputopo)
{
    unsigned i;

    (void)xch;
    if (cputopo) {
        for (i = 0; i < *max_cpus && i < STUB_CPUS; i++) {
            cputopo[i].core = i;
            cputopo[i].socket = 0;
            cputopo[i].node = 0;
        }
    }
    *max_cpus = STUB_CPUS;
    return 0;
}

/* Host description: a 4-CPU, 4 GiB box that can run PV and HVM guests. */
int libxl_get_physinfo(libxl_ctx *ctx, libxl_physinfo *physinfo)
{
    (void)ctx;
    libxl_physinfo_init(physinfo);
    physinfo->threads_per_core = 1;
    physinfo->cores_per_socket = STUB_CPUS;
    physinfo->max_cpu_id = STUB_CPUS - 1;
    physinfo->nr_cpus = STUB_CPUS;
    physinfo->cpu_khz = 2000000;
    physinfo->total_pages = 1048576;
    physinfo->free_pages = 1048576;
    physinfo->max_possible_mfn = 1048576;
    physinfo->nr_nodes = 1;
    physinfo->cap_hvm = true;
    physinfo->cap_pv = true;
    physinfo->cap_hap = true;
    physinfo->cap_shadow = true;
    physinfo->cap_gnttab_v1 = true;
    return 0;
}
