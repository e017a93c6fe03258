"""The on-disk descriptor store: records of descriptors, sparse Jacobians and targets per structure (LMDB), their
cache keys, parallel preparation, streamed normalisation statistics and a torch dataset for mini-batch training.

See ``docs/store.md``.
"""

from miniff.store.dataset import Batch, EpochSampler, StoreCollate, StoreDataset, StoreItem
from miniff.store.keys import descriptor_set_key, record_key, structure_hash
from miniff.store.lmdb_store import DescriptorStore, StoreIndexError
from miniff.store.prepare import PreparationReport, descriptor_record, prepare_store, target_record
from miniff.store.records import RECORD_FORMAT, CorruptRecordError, decode_record, encode_record
from miniff.store.statistics import RunningMoments, StoreStatistics, normalization_from_store, stream_statistics

__all__ = ["Batch", "EpochSampler", "StoreCollate", "StoreDataset", "StoreItem", "descriptor_set_key", "record_key",
           "structure_hash", "DescriptorStore", "StoreIndexError", "PreparationReport", "descriptor_record",
           "prepare_store", "target_record", "RECORD_FORMAT", "CorruptRecordError", "decode_record", "encode_record",
           "RunningMoments", "StoreStatistics", "normalization_from_store", "stream_statistics"]
