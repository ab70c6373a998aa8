"""The static vocabulary the catalogue generator draws from (no randomness here).

>>> from rowgym.envs.shop.catalog_data import CATEGORIES, OPTION_NAMES
>>> len(CATEGORIES) >= 30, "size" in OPTION_NAMES
(True, True)

Changing anything in this module changes the generated catalogue: bump
``catalog.GENERATOR_VERSION`` with it, so cached SQLite files are rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Every option group a product can have. Fixed, so that the add-to-cart form is a
#: closed pydantic model (``extra="forbid"``) rather than an open dict of fields.
OPTION_NAMES: tuple[str, ...] = ("size", "colour", "capacity", "length", "scent", "model")

APPAREL_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
WAIST_SIZES = ("28", "30", "32", "34", "36", "38", "40")
SHOE_SIZES = ("5", "6", "7", "8", "9", "10", "11", "12", "13")
COLOURS = ("black", "white", "navy", "grey", "red", "blue", "green", "beige", "pink", "yellow",
           "brown", "olive", "burgundy", "purple", "orange")
DENIM_COLOURS = ("black", "light blue", "medium blue", "dark blue", "grey", "white")
GENDER = ("men's", "women's", "unisex")

BRANDS = (
    "Northwind", "Alder & Co", "Bluefin", "Cobalt Lane", "Driftwood", "Ember", "Fieldstone",
    "Glenmore", "Harbor", "Ironbark", "Juniper", "Kestrel", "Larkspur", "Meridian", "Nimbus",
    "Oakridge", "Pinecrest", "Quarry", "Redwood", "Saltmarsh", "Tidewater", "Umber", "Vantage",
    "Willow & Vane", "Yardley Row", "Zephyr", "Arcadia", "Brightwater", "Cedar Hollow", "Dune",
    "Evergreen", "Foxglove", "Granite", "Heron", "Indigo Bay", "Kinfolk", "Lumen", "Moss & Stone",
    "Nordlys", "Orchard",
)


@dataclass(frozen=True)
class CategorySpec:
    """One product category and the values its products are drawn from.

    Attributes:
        slug: URL-safe id, e.g. ``"t-shirts"``.
        label: Human name shown in the shop.
        department: Coarser group (used by the type part of the score).
        noun: Singular product noun used in titles and instructions.
        axes: Single-valued attributes (key -> possible values), e.g. material.
        features: Multi-valued attributes; each product gets 1-3 of them.
        options: Option groups (name from OPTION_NAMES -> possible values).
        price: (low, high) price range in dollars.
        option_prob: Chance a product has its options at all ("some have none").
    """

    slug: str
    label: str
    department: str
    noun: str
    axes: dict[str, tuple[str, ...]]
    features: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    price: tuple[float, float] = (10.0, 50.0)
    option_prob: float = 1.0


def _c(slug, label, dept, noun, axes, features, options, price, option_prob=1.0) -> CategorySpec:
    return CategorySpec(slug, label, dept, noun, axes, tuple(features), options, price, option_prob)


FIT = ("slim fit", "regular fit", "relaxed fit")
APPAREL = {"size": APPAREL_SIZES, "colour": COLOURS}
SHOES = {"size": SHOE_SIZES, "colour": COLOURS}

CATEGORIES: tuple[CategorySpec, ...] = (
    # --- clothing ---
    _c("t-shirts", "T-shirts", "clothing", "t-shirt",
       {"gender": GENDER, "material": ("cotton", "organic cotton", "polyester", "linen blend", "bamboo"),
        "style": ("crew neck", "v-neck", "henley", "pocket"), "fit": FIT + ("oversized",),
        "pattern": ("solid", "striped", "graphic print")},
       ("short sleeve", "long sleeve", "machine washable", "moisture wicking", "tagless", "quick dry"),
       APPAREL, (8, 45)),
    _c("shirts", "Shirts", "clothing", "shirt",
       {"gender": GENDER, "material": ("cotton", "linen", "oxford cotton", "flannel", "chambray"),
        "style": ("button-down collar", "spread collar", "mandarin collar"), "fit": FIT,
        "pattern": ("solid", "checked", "striped", "floral")},
       ("long sleeve", "short sleeve", "wrinkle resistant", "machine washable", "chest pocket"),
       APPAREL, (18, 80)),
    _c("jeans", "Jeans", "clothing", "jeans",
       {"gender": GENDER, "material": ("denim", "stretch denim", "organic cotton denim", "raw denim"),
        "style": ("skinny", "straight leg", "bootcut", "tapered", "wide leg"), "fit": FIT,
        "rise": ("high rise", "mid rise", "low rise")},
       ("five pocket", "button fly", "zip fly", "stretch", "distressed"),
       {"size": WAIST_SIZES, "colour": DENIM_COLOURS}, (25, 120)),
    _c("trousers", "Trousers", "clothing", "trousers",
       {"gender": GENDER, "material": ("cotton twill", "wool blend", "linen", "polyester"),
        "style": ("chino", "cargo", "pleated", "jogger"), "fit": FIT},
       ("elastic waist", "water resistant", "stretch", "belt loops"),
       {"size": WAIST_SIZES, "colour": COLOURS}, (20, 90)),
    _c("shorts", "Shorts", "clothing", "shorts",
       {"gender": GENDER, "material": ("cotton", "nylon", "linen", "polyester"),
        "style": ("cargo", "chino", "athletic", "swim"), "fit": FIT},
       ("quick dry", "drawstring waist", "side pockets", "lined"), APPAREL, (10, 50)),
    _c("jackets", "Jackets", "clothing", "jacket",
       {"gender": GENDER, "material": ("leather", "denim", "nylon", "wool blend", "fleece", "polyester"),
        "style": ("bomber", "puffer", "parka", "rain jacket", "blazer", "windbreaker"), "fit": FIT},
       ("water resistant", "hooded", "insulated", "packable", "zip pockets", "windproof"),
       APPAREL, (35, 250)),
    _c("hoodies", "Hoodies", "clothing", "hoodie",
       {"gender": GENDER, "material": ("cotton", "fleece", "cotton blend", "polyester"),
        "style": ("pullover", "zip-up"), "fit": FIT + ("oversized",)},
       ("kangaroo pocket", "drawstring hood", "brushed interior", "machine washable"),
       APPAREL, (20, 75)),
    _c("sweaters", "Sweaters", "clothing", "sweater",
       {"gender": GENDER, "material": ("merino wool", "cashmere", "cotton", "acrylic", "lambswool"),
        "style": ("crew neck", "v-neck", "turtleneck", "cardigan", "cable knit"), "fit": FIT},
       ("ribbed cuffs", "lightweight", "hand wash only", "machine washable"), APPAREL, (25, 180)),
    _c("dresses", "Dresses", "clothing", "dress",
       {"material": ("cotton", "silk", "linen", "polyester", "rayon", "chiffon"),
        "style": ("maxi", "midi", "mini", "wrap", "shirt dress", "slip dress"),
        "fit": ("fitted", "a-line", "relaxed fit"), "pattern": ("solid", "floral", "polka dot", "striped")},
       ("sleeveless", "short sleeve", "long sleeve", "pockets", "adjustable straps", "lined"),
       APPAREL, (25, 160)),
    _c("skirts", "Skirts", "clothing", "skirt",
       {"material": ("denim", "cotton", "chiffon", "wool blend", "leather"),
        "style": ("pencil", "a-line", "pleated", "wrap"), "cut": ("mini length", "midi length", "maxi length")},
       ("elastic waist", "side zip", "lined", "pockets"), APPAREL, (18, 90)),
    _c("socks", "Socks", "clothing", "socks",
       {"gender": GENDER, "material": ("cotton", "merino wool", "bamboo", "nylon blend"),
        "style": ("ankle", "crew", "no-show", "knee-high"), "pack": ("3 pack", "6 pack", "12 pack")},
       ("cushioned", "moisture wicking", "arch support", "seamless toe"),
       {"size": ("S", "M", "L"), "colour": COLOURS}, (5, 35)),
    # --- shoes ---
    _c("sneakers", "Sneakers", "shoes", "sneakers",
       {"gender": GENDER, "material": ("canvas", "leather", "suede", "knit mesh", "synthetic"),
        "style": ("low top", "high top", "slip-on")},
       ("cushioned insole", "lightweight", "non-slip sole", "breathable", "vegan"), SHOES, (30, 160)),
    _c("running-shoes", "Running shoes", "shoes", "running shoes",
       {"gender": GENDER, "material": ("knit mesh", "synthetic", "engineered mesh"),
        "style": ("road", "trail", "racing")},
       ("cushioned", "responsive foam", "waterproof", "reflective details", "wide toe box"), SHOES, (50, 200)),
    _c("boots", "Boots", "shoes", "boots",
       {"gender": GENDER, "material": ("leather", "suede", "rubber", "nubuck"),
        "style": ("chelsea", "combat", "hiking", "ankle", "snow")},
       ("waterproof", "insulated", "slip resistant", "lace-up", "side zip"), SHOES, (45, 250)),
    _c("sandals", "Sandals", "shoes", "sandals",
       {"gender": GENDER, "material": ("leather", "rubber", "cork", "eva foam"),
        "style": ("slide", "flip-flop", "sport", "platform")},
       ("arch support", "adjustable straps", "water friendly", "cushioned footbed"), SHOES, (12, 90)),
    # --- home ---
    _c("bed-sheets", "Bed sheets", "home", "sheet set",
       {"material": ("cotton", "egyptian cotton", "linen", "bamboo", "microfiber"),
        "weave": ("percale", "sateen", "flannel", "jersey")},
       ("deep pocket", "wrinkle resistant", "hypoallergenic", "cooling", "machine washable"),
       {"size": ("twin", "full", "queen", "king", "california king"), "colour": COLOURS}, (25, 220)),
    _c("towels", "Towels", "home", "towel set",
       {"material": ("cotton", "turkish cotton", "bamboo", "microfiber"),
        "pieces": ("2 piece", "4 piece", "6 piece")},
       ("quick dry", "extra absorbent", "oeko-tex certified", "plush"), {"colour": COLOURS}, (15, 90)),
    _c("curtains", "Curtains", "home", "curtains",
       {"material": ("linen", "polyester", "velvet", "cotton"),
        "style": ("blackout", "sheer", "thermal insulated")},
       ("grommet top", "rod pocket", "machine washable", "noise reducing"),
       {"size": ("52 x 63 in", "52 x 84 in", "52 x 96 in"), "colour": COLOURS}, (18, 110)),
    _c("candles", "Candles", "home", "candle",
       {"material": ("soy wax", "beeswax", "coconut wax", "paraffin"),
        "style": ("jar", "pillar", "tin", "taper")},
       ("long burning", "cotton wick", "wood wick", "non-toxic"),
       {"scent": ("lavender", "vanilla", "sandalwood", "citrus", "eucalyptus", "unscented", "pine", "rose")},
       (8, 45), option_prob=0.6),
    _c("rugs", "Rugs", "home", "rug",
       {"material": ("wool", "jute", "cotton", "polypropylene"),
        "style": ("shag", "flatweave", "persian", "moroccan")},
       ("non-slip backing", "machine washable", "stain resistant", "low pile"),
       {"size": ("2 x 3 ft", "4 x 6 ft", "5 x 7 ft", "8 x 10 ft"), "colour": COLOURS}, (25, 400)),
    # --- kitchen ---
    _c("mugs", "Mugs", "kitchen", "mug",
       {"material": ("ceramic", "stoneware", "porcelain", "stainless steel", "glass"),
        "style": ("coffee mug", "travel mug", "espresso cup")},
       ("dishwasher safe", "microwave safe", "insulated", "leak proof lid"),
       {"capacity": ("8 oz", "12 oz", "16 oz", "20 oz"), "colour": COLOURS}, (6, 40)),
    _c("water-bottles", "Water bottles", "kitchen", "water bottle",
       {"material": ("stainless steel", "tritan plastic", "glass", "aluminum"),
        "style": ("wide mouth", "straw lid", "sport cap")},
       ("insulated", "bpa free", "leak proof", "dishwasher safe"),
       {"capacity": ("16 oz", "24 oz", "32 oz", "40 oz"), "colour": COLOURS}, (10, 50)),
    _c("frying-pans", "Frying pans", "kitchen", "pan",
       {"material": ("cast iron", "stainless steel", "nonstick aluminum", "carbon steel", "copper"),
        "style": ("skillet", "wok", "saute pan", "grill pan")},
       ("oven safe", "induction compatible", "dishwasher safe", "pfoa free"),
       {"size": ("8 in", "10 in", "12 in")}, (15, 150), option_prob=0.8),
    # --- electronics accessories ---
    _c("phone-cases", "Phone cases", "electronics accessories", "phone case",
       {"material": ("silicone", "tpu", "leather", "polycarbonate"),
        "style": ("slim", "rugged", "wallet", "clear")},
       ("magsafe compatible", "shockproof", "wireless charging compatible", "raised bezels", "kickstand"),
       {"model": ("iphone 15", "iphone 15 pro", "iphone 16", "galaxy s24", "pixel 9"), "colour": COLOURS},
       (8, 50)),
    _c("charging-cables", "Charging cables", "electronics accessories", "charging cable",
       {"material": ("braided nylon", "pvc", "silicone"),
        "connector": ("usb-c to usb-c", "usb-c to lightning", "usb-a to usb-c")},
       ("fast charging", "data transfer", "tangle free", "100w power delivery"),
       {"length": ("1 ft", "3 ft", "6 ft", "10 ft"), "colour": ("black", "white", "grey", "red", "blue")},
       (6, 30)),
    _c("headphones", "Headphones", "electronics accessories", "headphones",
       {"style": ("over-ear", "on-ear", "in-ear", "earbuds"),
        "connectivity": ("wireless", "wired", "bluetooth 5.3")},
       ("noise cancelling", "built-in microphone", "foldable", "long battery life", "sweat resistant"),
       {"colour": ("black", "white", "navy", "grey", "red", "pink", "green")}, (15, 350), option_prob=0.85),
    _c("power-banks", "Power banks", "electronics accessories", "power bank",
       {"material": ("aluminum", "plastic"), "style": ("compact", "slim", "rugged")},
       ("fast charging", "usb-c pd", "wireless charging", "led display", "airline approved"),
       {"capacity": ("5000 mah", "10000 mah", "20000 mah", "26800 mah"), "colour": ("black", "white", "blue")},
       (15, 90)),
    _c("laptop-sleeves", "Laptop sleeves", "electronics accessories", "laptop sleeve",
       {"material": ("neoprene", "felt", "leather", "polyester"), "style": ("sleeve", "briefcase", "messenger")},
       ("water resistant", "padded", "accessory pocket", "shock absorbing"),
       {"size": ("13 in", "14 in", "15.6 in", "16 in"), "colour": COLOURS}, (12, 70)),
    _c("keyboards", "Keyboards", "electronics accessories", "keyboard",
       {"style": ("mechanical", "membrane", "low profile"), "connectivity": ("wireless", "wired", "bluetooth")},
       ("backlit", "hot swappable", "compact layout", "quiet keys"),
       {"colour": ("black", "white", "grey")}, (20, 200), option_prob=0.7),
    # --- beauty ---
    _c("shampoo", "Shampoo", "beauty", "shampoo",
       {"formula": ("sulfate free", "clarifying", "moisturizing", "volumizing"),
        "hair type": ("for curly hair", "for dry hair", "for oily hair", "for all hair types")},
       ("paraben free", "vegan", "cruelty free", "with argan oil", "with tea tree oil"),
       {"size": ("8 fl oz", "12 fl oz", "16 fl oz", "33.8 fl oz")}, (5, 40)),
    _c("moisturizers", "Face moisturizers", "beauty", "face moisturizer",
       {"formula": ("gel", "cream", "lotion"),
        "skin type": ("for dry skin", "for oily skin", "for sensitive skin", "for all skin types")},
       ("spf 30", "fragrance free", "hyaluronic acid", "non-comedogenic", "vegan"),
       {"size": ("1.7 fl oz", "2.5 fl oz")}, (8, 70), option_prob=0.6),
    # --- sports ---
    _c("yoga-mats", "Yoga mats", "sports", "yoga mat",
       {"material": ("tpe", "natural rubber", "pvc", "cork"), "thickness": ("4 mm", "6 mm", "8 mm")},
       ("non-slip", "eco friendly", "carrying strap", "alignment lines", "extra long"),
       {"colour": COLOURS}, (15, 110)),
    _c("backpacks", "Backpacks", "sports", "backpack",
       {"material": ("nylon", "polyester", "canvas", "leather"),
        "style": ("daypack", "hiking", "laptop backpack", "rolltop")},
       ("water resistant", "padded laptop compartment", "usb charging port", "anti-theft pocket", "lightweight"),
       {"capacity": ("15 l", "20 l", "30 l", "40 l"), "colour": COLOURS}, (20, 180)),
    # --- pets ---
    _c("dog-collars", "Dog collars", "pets", "dog collar",
       {"material": ("nylon", "leather", "biothane", "padded neoprene"),
        "style": ("buckle", "martingale", "breakaway")},
       ("reflective", "quick release", "adjustable", "waterproof"),
       {"size": APPAREL_SIZES[:5], "colour": COLOURS}, (6, 40)),
    _c("dog-beds", "Dog beds", "pets", "dog bed",
       {"material": ("memory foam", "polyester fill", "orthopedic foam"),
        "style": ("bolster", "donut", "flat mat")},
       ("washable cover", "non-slip bottom", "waterproof liner", "calming"),
       {"size": ("S", "M", "L", "XL"), "colour": COLOURS}, (20, 150)),
)

#: Option groups whose values are an ordered scale: products get a contiguous run.
ORDERED_OPTIONS = frozenset({"size", "capacity", "length"})
