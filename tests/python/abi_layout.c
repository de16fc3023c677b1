// Prints the size of each struct of tmix.h and the offset of each of its fields, one
// "struct size" or "struct.field offset" line each, for test_abi.py to compare with the
// ctypes mirror in client/python/tmix/_libtmix.py.
#include <stddef.h>
#include <stdio.h>

#include "tmix.h"

#define SIZE(s)     printf(#s " %zu\n", sizeof(s))
#define FIELD(s, f) printf(#s "." #f " %zu\n", offsetof(s, f))

int main(void)
{
    SIZE(tmix_options);
    FIELD(tmix_options, group);
    FIELD(tmix_options, mode);
    FIELD(tmix_options, batch_size);
    FIELD(tmix_options, dtype);
    FIELD(tmix_options, layout);
    FIELD(tmix_options, timeout_ms);
    FIELD(tmix_options, delivery);
    FIELD(tmix_options, start);
    FIELD(tmix_options, cuda_device);
    FIELD(tmix_options, node_rank);
    FIELD(tmix_options, node_count);
    FIELD(tmix_options, cuda_pci_bus_id);

    SIZE(tmix_info);
    FIELD(tmix_info, session_id);
    FIELD(tmix_info, channels);
    FIELD(tmix_info, height);
    FIELD(tmix_info, width);
    FIELD(tmix_info, classes);
    FIELD(tmix_info, mix_n);
    FIELD(tmix_info, batch_size);
    FIELD(tmix_info, epoch_size);
    FIELD(tmix_info, batches_per_epoch);
    FIELD(tmix_info, mode);
    FIELD(tmix_info, dtype);
    FIELD(tmix_info, layout);
    FIELD(tmix_info, method);
    FIELD(tmix_info, delivery);
    FIELD(tmix_info, shm_name);
    FIELD(tmix_info, shm_base);
    FIELD(tmix_info, shm_bytes);
    FIELD(tmix_info, cuda_device);
    FIELD(tmix_info, cuda_slots);
    FIELD(tmix_info, mean);
    FIELD(tmix_info, std);
    FIELD(tmix_info, cuda_pci_bus_id);

    SIZE(tmix_batch);
    FIELD(tmix_batch, sequence);
    FIELD(tmix_batch, epoch);
    FIELD(tmix_batch, index);
    FIELD(tmix_batch, dtype);
    FIELD(tmix_batch, layout);
    FIELD(tmix_batch, ndim);
    FIELD(tmix_batch, shape);
    FIELD(tmix_batch, images);
    FIELD(tmix_batch, images_bytes);
    FIELD(tmix_batch, size);
    FIELD(tmix_batch, mix_n);
    FIELD(tmix_batch, sample_ids);
    FIELD(tmix_batch, sources);
    FIELD(tmix_batch, labels);
    FIELD(tmix_batch, weights);
    FIELD(tmix_batch, replaced_ids);
    FIELD(tmix_batch, replaced_count);
    FIELD(tmix_batch, cuda_in_slot);
    FIELD(tmix_batch, cuda_slot);
    FIELD(tmix_batch, cuda_mem);
    FIELD(tmix_batch, cuda_event);

    SIZE(tmix_group_status);
    FIELD(tmix_group_status, name);
    FIELD(tmix_group_status, mode);
    FIELD(tmix_group_status, members);
    FIELD(tmix_group_status, batch_size);
    FIELD(tmix_group_status, epoch);
    FIELD(tmix_group_status, batches_done);
    FIELD(tmix_group_status, batches_per_epoch);
    FIELD(tmix_group_status, batches_served);
    FIELD(tmix_group_status, shm_slots);
    FIELD(tmix_group_status, shm_slots_used);
    FIELD(tmix_group_status, cuda_slots);
    FIELD(tmix_group_status, cuda_slots_used);
    FIELD(tmix_group_status, images_served);
    FIELD(tmix_group_status, batches_ready);
    FIELD(tmix_group_status, batches_producing);
    FIELD(tmix_group_status, node_rank);
    FIELD(tmix_group_status, node_count);

    SIZE(tmix_server_status);
    FIELD(tmix_server_status, version);
    FIELD(tmix_server_status, uptime_s);
    FIELD(tmix_server_status, trainers);
    FIELD(tmix_server_status, batches_served);
    FIELD(tmix_server_status, backend);
    FIELD(tmix_server_status, dataset);
    FIELD(tmix_server_status, dataset_size);
    FIELD(tmix_server_status, method);
    FIELD(tmix_server_status, bad_samples);
    FIELD(tmix_server_status, memory_bytes);
    FIELD(tmix_server_status, group_count);
    FIELD(tmix_server_status, groups);
    FIELD(tmix_server_status, max_memory_bytes);
    FIELD(tmix_server_status, producer_jobs);
    FIELD(tmix_server_status, gpu_memory_used);
    FIELD(tmix_server_status, gpu_memory_total);
    FIELD(tmix_server_status, next_p50_s);
    FIELD(tmix_server_status, next_p99_s);
    FIELD(tmix_server_status, read_mean_s);
    FIELD(tmix_server_status, mix_mean_s);
    return 0;
}
