"""shopsight.serving"""
