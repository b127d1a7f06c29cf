import unittest

from calc import add, div, mul, power, sub


class CalcTest(unittest.TestCase):
    def test_operations(self):
        self.assertEqual(add.compute(2, 3), 5)
        self.assertEqual(sub.compute(2, 3), -1)
        self.assertEqual(mul.compute(2, 3), 6)
        self.assertEqual(div.compute(3, 2), 1.5)
        self.assertEqual(power.compute(2, 3), 8)


if __name__ == "__main__":
    unittest.main()
