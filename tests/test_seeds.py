"""Seed loaders: folders, steering/class CSVs, boxes JSON, and a clear message for each bad input."""

import json

import cv2
import numpy as np
import pytest

from deeptest_iot.errors import InputError
from deeptest_iot.data.seeds import generated_seeds, load_seeds


def _write(folder, name, h=20, w=40, value=0):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[..., 0] = 200  # red in RGB = the last channel in OpenCV's BGR
    assert cv2.imwrite(str(path), img[..., ::-1])
    return path


@pytest.fixture
def frames(tmp_path):
    d = tmp_path / "frames"
    _write(d, "a.png", value=10)
    _write(d, "b.png", value=20)
    _write(d, "sub/c.jpg", h=40, w=80, value=30)
    return d


def test_folder_sorted_rgb_and_resized_to_first(frames):
    s = load_seeds(frames)
    assert s.ids == ["a.png", "b.png", "sub/c.jpg"]
    assert s.images.shape == (3, 20, 40, 3) and s.images.dtype == np.uint8
    assert s.images[0, 0, 0].tolist() == [200, 10, 10]  # RGB order
    assert s.labels is None and s.boxes is None and s.task is None


def test_udacity_style_labels_by_stem(frames, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("frame_id,steering_angle\nb,0.25\na,-0.1\n")
    s = load_seeds(frames, labels=csv)
    assert s.ids == ["b.png", "a.png"]  # CSV order; c.jpg has no label and is left out
    assert s.labels.dtype == np.float32 and s.labels.tolist() == pytest.approx([0.25, -0.1])
    assert s.task == "steering"


def test_interpolated_csv_and_default_folder(tmp_path):
    _write(tmp_path / "center", "111.jpg")
    _write(tmp_path / "center", "222.jpg")
    csv = tmp_path / "interpolated.csv"
    csv.write_text("index,timestamp,width,height,frame_id,filename,angle,torque\n"
                   "0,111,640,480,center_camera,center/111.jpg,0.5,0\n"
                   "1,222,640,480,center_camera,center/222.jpg,-0.5,0\n")
    # "frame_id" here names the camera, not the frame: the filename column wins
    s = load_seeds(labels=csv)
    assert s.ids == ["center/111.jpg", "center/222.jpg"]
    assert s.labels.tolist() == [0.5, -0.5]


def test_simulator_driving_log_headerless(tmp_path):
    d = tmp_path / "IMG"
    _write(d, "center_1.jpg")
    _write(d, "center_2.jpg")
    log = tmp_path / "driving_log.csv"
    log.write_text("C:\\sim\\IMG\\center_1.jpg, C:\\sim\\IMG\\left_1.jpg, C:\\sim\\IMG\\right_1.jpg, 0.5, 1, 0, 30\n"
                   "/home/u/IMG/center_2.jpg, /home/u/IMG/left_2.jpg, /home/u/IMG/right_2.jpg, -1, 1, 0, 30\n")
    s = load_seeds(d, labels=log, angle_scale=-0.4)
    assert s.ids == ["center_1.jpg", "center_2.jpg"]
    assert s.labels.tolist() == pytest.approx([-0.2, 0.4])


def test_class_labels_names_and_indices(frames, tmp_path):
    csv = tmp_path / "classes.csv"
    csv.write_text("filename,class\na.png,stop\nb.png,yield\n")
    s = load_seeds(frames, classes=csv)
    assert s.task == "classification" and s.labels.tolist() == ["stop", "yield"]
    assert s.class_indices(["yield", "stop"]).tolist() == [1, 0]
    with pytest.raises(InputError, match="unknown class name"):
        s.class_indices(["car"])
    csv.write_text("filename,class_id\na.png,3\nb.png,0\n")
    assert load_seeds(frames, classes=csv).labels.tolist() == [3, 0]


def test_boxes_json_scaled_with_resize(frames, tmp_path):
    bj = tmp_path / "boxes.json"
    bj.write_text(json.dumps({"images": {"a.png": [{"box": [1, 2, 11, 12], "class": "car"}],
                                         "sub/c.jpg": [{"box": [10, 10, 30, 20], "class": 1},
                                                       {"box": [0, 0, 4, 4], "class": 0}]}}))
    s = load_seeds(frames, boxes=bj)
    assert s.boxes[0].tolist() == [[1, 2, 11, 12]] and s.box_classes[0].tolist() == ["car"]
    assert s.boxes[1].shape == (0, 4)
    assert s.boxes[2].tolist() == [[5, 5, 15, 10], [0, 0, 2, 2]]  # c.jpg was halved
    assert s.box_classes[2].tolist() == [1, 0]


def test_generated_default():
    s = load_seeds()
    assert len(s) == 100 and s.images.shape == (100, 160, 320, 3) and s.task == "steering"
    g = generated_seeds(3, seed=5, height=64, width=128)
    assert g.images.shape == (3, 64, 128, 3) and g.labels.shape == (3,) and len(g.boxes) == 3
    assert np.array_equal(g.images, generated_seeds(3, seed=5, height=64, width=128).images)


# ---- each bad input gets a message naming the file and the line -------------------------------

def test_unreadable_image(frames):
    (frames / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png: cannot decode"):
        load_seeds(frames)


def test_label_for_missing_file(frames, tmp_path):
    """A CSV may cover more frames than the folder (issue 13): its extra rows are counted, not refused."""
    csv = tmp_path / "labels.csv"
    csv.write_text("frame_id,steering_angle\na,0.1\nzzz,0.2\n")
    s = load_seeds(frames, labels=csv)
    assert s.ids == ["a.png"] and s.labels.tolist() == [pytest.approx(0.1)]
    assert any("1 of 2 rows of labels.csv name no image" in n and "line 3, id 'zzz'" in n for n in s.notes)
    csv.write_text("frame_id,steering_angle\nyyy,0.1\nzzz,0.2\n")
    with pytest.raises(InputError, match=r"labels\.csv: none of its 2 row\(s\) names an image.*line 2: no image for id 'yyy'"):
        load_seeds(frames, labels=csv)


def test_duplicate_id(frames, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("frame_id,steering_angle\na,0.1\nb,0.1\na.png,0.3\n")
    with pytest.raises(InputError, match=r"labels\.csv line 4: duplicate id 'a\.png' \(first on line 2\)"):
        load_seeds(frames, labels=csv)


@pytest.mark.parametrize("bad", ["abc", "", "nan", "inf"])
def test_non_numeric_angle(frames, tmp_path, bad):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"frame_id,steering_angle\na,0.1\nb,{bad}\n")
    with pytest.raises(InputError, match=r"labels\.csv line 3: steering angle .* not a (finite )?number"):
        load_seeds(frames, labels=csv)


def test_missing_columns_and_files(frames, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("name,value\na,1\n")
    with pytest.raises(InputError, match=r"labels\.csv line 1: no id column"):
        load_seeds(frames, labels=csv)
    with pytest.raises(InputError, match="no such labels file"):
        load_seeds(frames, labels=tmp_path / "nope.csv")
    with pytest.raises(InputError, match="no such folder"):
        load_seeds(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .png or .jpg"):
        load_seeds(empty)


def test_bad_boxes(frames, tmp_path):
    bj = tmp_path / "boxes.json"
    bj.write_text('{"a.png": [\n{"box": [1, 2, 3]\n')
    with pytest.raises(InputError, match=r"boxes\.json line 3: not valid JSON"):
        load_seeds(frames, boxes=bj)
    bj.write_text(json.dumps({"a.png": [{"box": [5, 0, 1, 4], "class": "car"}]}))
    with pytest.raises(InputError, match=r"entry 'a\.png' object 0: box .* x0 < x1"):
        load_seeds(frames, boxes=bj)
    bj.write_text(json.dumps({"q.png": []}))
    with pytest.raises(InputError, match=r"boxes\.json entry 'q\.png': no image"):
        load_seeds(frames, boxes=bj)
