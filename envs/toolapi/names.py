"""Word lists for generating people, places and products (fixed lists: same data everywhere)."""

FIRST = ["Ava", "Liam", "Noah", "Emma", "Olivia", "Mia", "Lucas", "Yusuf", "Sofia", "Amara", "Chen", "Priya",
         "Mateo", "Isabel", "Omar", "Hana", "Ivan", "Zoe", "Ethan", "Lena", "Raj", "Fatima", "Kenji", "Nora",
         "Diego", "Aisha", "Tomas", "Mei", "Daniel", "Sara", "Jonas", "Leila", "Arjun", "Chloe", "Felix", "Ines"]
LAST = ["Garcia", "Smith", "Kim", "Patel", "Nguyen", "Muller", "Rossi", "Silva", "Cohen", "Okafor", "Sato",
        "Novak", "Lopez", "Brown", "Khan", "Ivanova", "Moreau", "Jensen", "Ahmed", "Wilson", "Tanaka", "Costa",
        "Schmidt", "Haddad", "Murphy", "Larsen", "Dubois", "Chen", "Fischer", "Santos"]
STREETS = ["Maple St", "Oak Ave", "Pine Rd", "Cedar Ln", "Elm St", "Lake Dr", "Hill Rd", "River Way", "Park Ave",
           "Sunset Blvd", "Birch Ct", "Willow Way", "Main St", "Church St", "Mill Rd"]
CITIES = [("Austin", "TX"), ("Denver", "CO"), ("Seattle", "WA"), ("Boston", "MA"), ("Phoenix", "AZ"),
          ("Chicago", "IL"), ("Portland", "OR"), ("Atlanta", "GA"), ("Miami", "FL"), ("Detroit", "MI"),
          ("Columbus", "OH"), ("Nashville", "TN")]
PRODUCTS = {
    "T-Shirt": {"color": ["red", "blue", "black", "white", "green"], "size": ["S", "M", "L", "XL"]},
    "Running Shoes": {"color": ["black", "white", "grey"], "size": ["8", "9", "10", "11"]},
    "Backpack": {"color": ["black", "navy", "olive"], "capacity": ["20L", "30L"]},
    "Desk Lamp": {"color": ["black", "silver"], "bulb": ["LED", "halogen"]},
    "Water Bottle": {"color": ["blue", "pink", "steel"], "capacity": ["500ml", "750ml", "1L"]},
    "Headphones": {"color": ["black", "white"], "type": ["wired", "wireless"]},
    "Jacket": {"color": ["black", "tan", "green"], "size": ["S", "M", "L", "XL"]},
    "Coffee Maker": {"capacity": ["4 cups", "8 cups", "12 cups"], "finish": ["black", "steel"]},
    "Yoga Mat": {"color": ["purple", "blue", "grey"], "thickness": ["4mm", "6mm"]},
    "Bluetooth Speaker": {"color": ["black", "red", "blue"], "battery": ["10h", "20h"]},
}
AIRPORTS = {"JFK": "New York", "LAX": "Los Angeles", "ORD": "Chicago", "SFO": "San Francisco", "SEA": "Seattle",
            "BOS": "Boston", "ATL": "Atlanta", "DEN": "Denver", "MIA": "Miami", "PHX": "Phoenix",
            "DFW": "Dallas", "EWR": "Newark"}
