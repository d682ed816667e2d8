"""Generate a small synthetic face-mask dataset in the competition's layout.

18 classes: mask (wear, incorrect, not_wear) x gender (male, female) x age
(<30, 30-59, 60+), class index ``mask * 6 + gender * 3 + age`` as in the
competition. Each person has 7 photos; the drawing makes the classes
learnable and the photos of one person alike (as real photos are), so a
split that puts one person on both sides scores too well:

* gender: the background tint (blue or pink);
* mask: a band over the lower face (green: worn, orange: worn incorrectly,
  none: not worn);
* age: the face's texture (plain, stripes, checks);
* per person: the skin tone and the face's position.

Layout written under ``--out`` (like the competition's)::

    train/train.csv            id,gender,race,age,path    one row per person
    train/images/<path>/{mask1..mask5,incorrect_mask,normal}.png
    train/images.csv           path,person,mask,gender,age_group   one row per image
    eval/info.csv              ImageID,ans   (ans blank: the submission template)
    eval/images/<ImageID>
    eval/answers.csv           ImageID,ans   (not in the competition: the true
                                              classes, to measure a submission)

The ``image_csv`` dataset reads ``train/train.csv`` and the person folders
directly (see ``examples/mask.yaml``). ``train/images.csv`` is the same
data flattened to one row per photo, for tools that want that; for the real
competition data, ``--flatten DATA_DIR`` writes it from
``DATA_DIR/train/train.csv`` and the person folders (whatever the image
format).

Run::

    python examples/make_mask_dataset.py --out data/mask --people 120
    torchyard run examples/mask.yaml
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

MASKS = ("wear", "incorrect", "not_wear")
GENDERS = ("male", "female")
AGE_GROUPS = ("<30", "30-59", "60+")
#: The competition's photo names per person, and the mask state of each.
PHOTOS = {**{f"mask{i}": "wear" for i in range(1, 6)}, "incorrect_mask": "incorrect", "normal": "not_wear"}

_BACKGROUND = {"male": (70, 110, 200), "female": (215, 120, 170)}
_BAND = {"wear": (40, 200, 60), "incorrect": (245, 150, 30)}


def age_group(age: int) -> str:
    """The competition's age buckets: <30, 30 to 59, 60 and over."""
    return AGE_GROUPS[0] if age < 30 else AGE_GROUPS[1] if age < 60 else AGE_GROUPS[2]


def class_index(mask: str, gender: str, age: int) -> int:
    """The competition's class number: ``mask * 6 + gender * 3 + age group``."""
    return MASKS.index(mask) * 6 + GENDERS.index(gender) * 3 + AGE_GROUPS.index(age_group(age))


def draw(mask: str, gender: str, age: int, person: np.random.Generator, rng: np.random.Generator,
         size: int) -> np.ndarray:
    """One ``size x size`` RGB photo. ``person`` draws what is fixed per person
    (reseeded identically for each of their photos), ``rng`` the noise."""
    skin = person.uniform(150, 235) * np.array([1.0, 0.8, 0.65])
    cy, cx = size / 2 + person.uniform(-1, 1, 2) * size / 12
    y, x = np.mgrid[:size, :size].astype(np.float64)
    image = np.empty((size, size, 3))
    image[:] = _BACKGROUND[gender]
    face = ((y - cy) / (0.42 * size)) ** 2 + ((x - cx) / (0.32 * size)) ** 2 <= 1
    texture = np.ones((size, size))
    group = AGE_GROUPS.index(age_group(age))
    period = max(2, size // 8)
    if group == 1:
        texture = np.where((x // period) % 2 == 0, 0.75, 1.0)
    elif group == 2:
        texture = np.where(((x // period) + (y // period)) % 2 == 0, 0.6, 1.0)
    image[face] = skin * texture[face, None]
    if mask in _BAND:
        top = cy + (0.05 if mask == "wear" else 0.22) * size
        band = face & (y >= top) & (y <= top + 0.2 * size)
        image[band] = _BAND[mask]
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate(out: Path, people: int, seed: int, size: int = 32, eval_images: int | None = None) -> None:
    """Write the dataset (see the module documentation) under ``out``."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(people):
        gender = GENDERS[n % 2]
        age = int(rng.integers(18, 75))
        folder = f"{n + 1:06d}_{gender}_Asian_{age}"
        person_seed = int(rng.integers(2**31))
        rows.append({"id": f"{n + 1:06d}", "gender": gender, "race": "Asian", "age": age, "path": folder})
        target = out / "train" / "images" / folder
        target.mkdir(parents=True, exist_ok=True)
        for stem, mask in PHOTOS.items():
            photo = draw(mask, gender, age, np.random.default_rng(person_seed), rng, size)
            Image.fromarray(photo).save(target / f"{stem}.png")
    pd.DataFrame(rows).to_csv(out / "train" / "train.csv", index=False)
    flatten(out)

    ids, answers = [], []
    (out / "eval" / "images").mkdir(parents=True, exist_ok=True)
    for n in range(eval_images if eval_images is not None else max(6, people * 7 // 4)):
        mask, gender = MASKS[int(rng.integers(3))], GENDERS[int(rng.integers(2))]
        age = int(rng.integers(18, 75))
        image_id = hashlib.sha1(f"{seed}-{n}".encode()).hexdigest()[:16] + ".png"
        photo = draw(mask, gender, age, np.random.default_rng(int(rng.integers(2**31))), rng, size)
        Image.fromarray(photo).save(out / "eval" / "images" / image_id)
        ids.append(image_id)
        answers.append(class_index(mask, gender, age))
    pd.DataFrame({"ImageID": ids, "ans": ""}).to_csv(out / "eval" / "info.csv", index=False)
    # what the competition keeps secret: to measure a submission's true accuracy
    pd.DataFrame({"ImageID": ids, "ans": answers}).to_csv(out / "eval" / "answers.csv", index=False)


def flatten(data_dir: Path) -> pd.DataFrame:
    """Write ``train/images.csv``, one row per photo, from ``train/train.csv``
    (one row per person) and the person folders; return it.

    Works on the competition's own data: a photo's mask state comes from its
    file name (``mask1``..``mask5``, ``incorrect_mask``, ``normal``).
    """
    train = data_dir / "train"
    people = pd.read_csv(train / "train.csv", dtype=str, keep_default_na=False)
    rows = []
    for person in people.itertuples(index=False):
        for file in sorted((train / "images" / person.path).iterdir()):
            if file.stem not in PHOTOS or file.name.startswith("."):
                continue
            rows.append({
                "path": f"images/{person.path}/{file.name}",
                "person": person.path,
                "mask": PHOTOS[file.stem],
                "gender": person.gender,
                "age_group": age_group(int(person.age)),
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_csv(train / "images.csv", index=False)
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/mask"), help="output folder (default: data/mask)")
    parser.add_argument("--people", type=int, default=120, help="people, 7 photos each (default: 120)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="unlabelled eval images (default: a quarter of the training photos)")
    parser.add_argument("--flatten", type=Path, metavar="DATA_DIR",
                        help="only write DATA_DIR/train/images.csv for existing data (the real competition's)")
    args = parser.parse_args(argv)
    if args.flatten is not None:
        frame = flatten(args.flatten)
        print(f"wrote {args.flatten / 'train' / 'images.csv'}: {len(frame)} photos of "
              f"{frame['person'].nunique()} people")
        return
    if args.people < 1 or args.size < 8:
        parser.error("--people must be >= 1 and --size >= 8")
    generate(args.out, args.people, args.seed, args.size, args.eval_images)
    print(f"wrote {args.out}: {args.people * 7} training photos of {args.people} people, "
          f"eval images listed in {args.out / 'eval' / 'info.csv'}")


if __name__ == "__main__":
    main()
