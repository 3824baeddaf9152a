"""The .beton format as we write it is ffcv's: same types, and ffcv reads what we write."""
import numpy as np

from fastimagenet.common import beton


def test_on_disk_types_match_ffcv():
    from ffcv.fields import IntField, RGBImageField
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, TYPE_ID_HANDLER, FieldDescType, HeaderType, \
        get_metadata_type
    assert beton.CURRENT_VERSION == CURRENT_VERSION
    assert beton.HeaderType == HeaderType and beton.FieldDescType == FieldDescType
    assert beton.ALLOC_TABLE_TYPE == ALLOC_TABLE_TYPE
    theirs = get_metadata_type([RGBImageField(), IntField()])
    assert beton.METADATA_TYPE.itemsize == theirs.itemsize
    for name in ('f0', 'f1'):
        assert beton.METADATA_TYPE.fields[name][1] == theirs.fields[name][1]  # offset
        assert beton.METADATA_TYPE.fields[name][0].descr == theirs.fields[name][0].descr
    assert beton.IMAGE_META.fields == RGBImageField().metadata_type.fields  # same offsets inside
    assert TYPE_ID_HANDLER[beton.TYPE_IDS['image']] is RGBImageField
    assert TYPE_ID_HANDLER[beton.TYPE_IDS['label']] is IntField
    assert not RGBImageField().to_binary()[0].any() and not IntField().to_binary()[0].any()


def test_written_file_reads_back_with_ffcv_reader(tmp_path):
    from ffcv.reader import Reader
    path = tmp_path / 'x.beton'
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, 7, 3), dtype=np.uint8) for h in (5, 9, 3)]
    with open(path, 'wb') as f:
        w = beton.BetonWriter(f, capacity=5)
        for label, image in enumerate(images):
            w.add(beton.MODE_RAW, image.shape[0], image.shape[1], image.reshape(-1), label * 10)
        assert w.finish() == 3
    reader = Reader(str(path))
    assert reader.num_samples == 3 and list(reader.handlers) == ['image', 'label']
    assert reader.metadata['f1'].tolist() == [0, 10, 20]
    assert reader.metadata['f0']['height'].tolist() == [5, 9, 3] and (reader.metadata['f0']['width'] == 7).all()
    ours = beton.BetonFile(path)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(ours.image(i), image)
